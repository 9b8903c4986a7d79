import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The dev/preview servers forward the API to a locally running `tensoras serve`
// (TENSORAS_URL, else the default port), so the console talks to the same origin exactly
// as it does when the binary embeds it.
const api = { '/v1': { target: process.env.TENSORAS_URL || 'http://127.0.0.1:8080', changeOrigin: false } };

export default defineConfig({
  base: '/console/',
  plugins: [preact()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    // The binary embeds dist/; keep every byte in files (no data: URLs for scripts).
    assetsInlineLimit: 0,
    // Vite injects a tiny inline module-preload polyfill otherwise; the CSP forbids inline scripts.
    modulePreload: { polyfill: false },
  },
  server: { proxy: api },
  // Preview mirrors the policy the binary sends, so a build that needs inline code fails here too.
  preview: {
    proxy: api,
    headers: {
      'Content-Security-Policy':
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'",
    },
  },
});
