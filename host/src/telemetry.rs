//! Logs and traces. Logs go to stderr as text or JSON (`--log-format`), filtered by
//! `TENSORAS_LOG`. Traces are optional: given an OTLP endpoint (`--otlp-endpoint`, or
//! OpenTelemetry's own `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//! each request's span (api/request_id.rs) is exported to an OpenTelemetry collector over
//! OTLP/HTTP, protobuf or JSON (`OTEL_EXPORTER_OTLP_PROTOCOL`), continuing the caller's trace
//! when the request carries a W3C `traceparent`. Spans carry what the logs carry (method,
//! route, status, the request id), never a body or a key.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object a line, for a log collector.
    Json,
}

/// Whether this process exports traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traces<'a> {
    /// Never (commands other than `serve`).
    Off,
    /// When an endpoint is given here or in OpenTelemetry's variables.
    IfConfigured {
        /// The collector's base URL (`http://collector:4318`); spans go to its `/v1/traces`.
        endpoint: Option<&'a str>,
    },
}

/// Keeps the trace exporter alive; dropping it sends what is still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Set once [`init`] installed a trace exporter.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces: the request span records its trace-only fields then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: sending the last traces: {e}");
        }
    }
}

/// Installs the process's log (and, with an endpoint, trace) subscriber.
pub fn init(format: LogFormat, traces: Traces<'_>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_env("TENSORAS_LOG").unwrap_or_else(|_| EnvFilter::new("info,wasmtime_wasi_http=warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        // The event's fields at the top level; the request span's id, method and path
        // under `span`, the only span that matters to a log search.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
    };
    let provider = match traces {
        Traces::Off => None,
        Traces::IfConfigured { endpoint } => tracer_provider(endpoint)?,
    };
    // Request spans are at info; what a debug filter lets into the logs stays out of traces.
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("tensoras"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    tracing_subscriber::registry().with(logs.with_filter(filter)).with(traces).try_init()?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

fn tracer_provider(endpoint: Option<&str>) -> anyhow::Result<Option<SdkTracerProvider>> {
    let from_env = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if endpoint.is_none() && !from_env {
        return Ok(None);
    }
    // The protocol, headers and timeout come from OpenTelemetry's variables; an endpoint
    // from the command line is a base URL like OTEL_EXPORTER_OTLP_ENDPOINT.
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    // OTLP/HTTP's default encoding is protobuf (the exporter would pick JSON, its other
    // feature here); the variables still choose.
    let chosen =
        ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"].iter().any(|v| std::env::var_os(v).is_some());
    if !chosen {
        exporter = exporter.with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    }
    if let Some(base) = endpoint {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = exporter.build().map_err(|e| anyhow::anyhow!("the OTLP trace exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("tensoras");
    }
    let resource = resource.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build();
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build()))
}

/// The caller's trace context from a W3C `traceparent` (and `tracestate`) header, for the
/// request's span to continue; an empty context when there is none.
pub fn remote_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;

    use super::*;

    #[test]
    fn a_traceparent_is_continued_and_garbage_ignored() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let cx = remote_context(&headers);
        let span = cx.span();
        let remote = span.span_context();
        assert_eq!(remote.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(remote.is_remote() && remote.is_sampled());
        headers.insert("traceparent", "not a trace".parse().unwrap());
        assert!(!remote_context(&headers).span().span_context().is_valid());
    }
}
