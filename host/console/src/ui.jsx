// Small pieces every page shares: the error banner, the two-step destructive button,
// a hook that tracks one running request, and formatting.
import { useState, useEffect, useRef, useCallback } from 'preact/hooks';

export function ErrorBanner({ error, onDismiss }) {
  if (!error) return null;
  return (
    <div class="banner error" data-testid="error" role="alert">
      <span>{String(error.message || error)}</span>
      {onDismiss && (
        // The × is drawn by CSS so the banner's text is exactly the server's message.
        <button type="button" class="link dismiss" onClick={onDismiss} aria-label="Dismiss" title="Dismiss" />
      )}
    </div>
  );
}

// A destructive action takes two clicks on the same button; the armed state lapses
// after a few seconds so a stray later click cannot confirm.
export function ConfirmButton({ label, confirmLabel, onConfirm, disabled, testid, class: cls }) {
  const [armed, setArmed] = useState(false);
  const [busy, setBusy] = useState(false);
  const timer = useRef(null);
  const mounted = useRef(true);
  useEffect(() => () => {
    mounted.current = false;
    clearTimeout(timer.current);
  }, []);
  const click = async () => {
    if (!armed) {
      setArmed(true);
      clearTimeout(timer.current);
      timer.current = setTimeout(() => mounted.current && setArmed(false), 5000);
      return;
    }
    clearTimeout(timer.current);
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      if (mounted.current) {
        setBusy(false);
        setArmed(false);
      }
    }
  };
  return (
    <button
      type="button"
      class={`${cls || ''} ${armed ? 'danger' : 'secondary'}`}
      data-testid={testid}
      disabled={disabled || busy}
      onClick={click}
    >
      {armed ? confirmLabel : label}
    </button>
  );
}

// Runs async actions for a page: one `error` for the banner, and which named action
// is running so its button can be disabled.
// The one row a table shows while it has nothing to list.
export function EmptyRow({ cols, children }) {
  return (
    <tr>
      <td colSpan={cols} class="muted">
        {children}
      </td>
    </tr>
  );
}

export function useAction() {
  const [error, setError] = useState(null);
  const [running, setRunning] = useState({});
  const mounted = useRef(true);
  useEffect(() => () => {
    mounted.current = false;
  }, []);
  const run = useCallback(async (name, fn) => {
    setRunning((r) => ({ ...r, [name]: true }));
    setError(null);
    try {
      return await fn();
    } catch (e) {
      if (mounted.current && e.name !== 'AbortError') setError(e);
      return undefined;
    } finally {
      if (mounted.current) setRunning((r) => ({ ...r, [name]: false }));
    }
  }, []);
  return { error, setError, running, run };
}

export function fmtTime(unixSeconds) {
  if (unixSeconds == null) return '';
  return new Date(unixSeconds * 1000).toISOString().replace('T', ' ').slice(0, 19);
}

export function fmtBytes(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function fmtInt(n) {
  return (n ?? 0).toLocaleString('en-US');
}

export function fmtUsd(n) {
  const v = n ?? 0;
  // Small per-request costs would show as 0.00 with two decimals.
  return v === 0 ? '0' : v < 0.01 ? v.toPrecision(3) : v.toFixed(2);
}
