// Deploys a tool function from a `.wasm` component, calls it, and reads its versions and logs;
// then an HTTP function, invoked.
//   TENSORAS_API_KEY=tns_... node functions.js build/functions/calc.wasm build/functions/echo.wasm
import { BadRequestError, Tensoras } from 'tensoras';

const client = new Tensoras();
const [calcWasm = 'build/functions/calc.wasm', echoWasm = 'build/functions/echo.wasm'] = process.argv.slice(2);

const fn = await client.functions.deploy(calcWasm, { name: 'calc', kind: 'tool', limits: { timeout_ms: 5000 } });
console.log(`deployed ${fn.name} v${fn.version} (${fn.size_bytes} bytes)`);

const result = await client.functions.call('calc', { expression: '12345 * 678' });
console.log(result.output, `in ${result.duration_ms.toFixed(1)} ms`);
try {
  await client.functions.call('calc', { expression: '1 +' });
} catch (err) {
  if (err instanceof BadRequestError) console.log('refused:', err.message); // invalid_tool_arguments
  else throw err;
}

for await (const version of client.functions.versions('calc')) console.log('version', version.version, version.active);
const logs = await client.functions.logs('calc', { limit: 10 });
console.log(logs.stats.invocations, 'invocations,', logs.stats.errors, 'errors');

await client.functions.deploy(echoWasm, { name: 'echo', kind: 'http' });
const response = await client.functions.invoke('echo', { path: 'hello', body: 'ping', headers: { 'content-type': 'text/plain' } });
console.log(response.status, await response.text());

await client.functions.delete('calc');
await client.functions.delete('echo');
