//! An OTLP/HTTP pipeline for both signals: a meter provider with a periodic
//! reader and a tracer provider with a batch processor, each exporting
//! protobuf bodies over plain HTTP (see the [module documentation](super#otlp)).

use std::fmt;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};

/// The OTLP/HTTP port on this machine, where a local collector listens.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// The longest endpoint accepted.
const MAX_ENDPOINT_LEN: usize = 2048;

/// Where and how often to export.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    endpoint: String,
    service_name: String,
    metrics_interval: Duration,
    timeout: Duration,
}

impl Default for OtlpConfig {
    fn default() -> OtlpConfig {
        OtlpConfig {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            service_name: "respool".to_owned(),
            metrics_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

impl OtlpConfig {
    /// The defaults: [`DEFAULT_ENDPOINT`], service `respool`, metrics every
    /// 60 s, a 10 s export timeout.
    #[must_use]
    pub fn new() -> OtlpConfig {
        OtlpConfig::default()
    }

    /// The collector's base URL (`http://host:port`, optionally with a path
    /// prefix); `/v1/traces` and `/v1/metrics` are appended.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> OtlpConfig {
        self.endpoint = endpoint.into();
        self
    }

    /// The `service.name` resource attribute.
    #[must_use]
    pub fn service_name(mut self, name: impl Into<String>) -> OtlpConfig {
        self.service_name = name.into();
        self
    }

    /// How often the periodic reader collects and exports metrics (at least
    /// 1 ms).
    #[must_use]
    pub fn metrics_interval(mut self, interval: Duration) -> OtlpConfig {
        self.metrics_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The timeout of one export request.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> OtlpConfig {
        self.timeout = timeout;
        self
    }

    /// The URL of one signal (`"traces"` or `"metrics"`), after checking
    /// the endpoint.
    fn signal_url(&self, signal: &str) -> Result<String, OtlpError> {
        let e = self.endpoint.trim();
        let invalid = |reason: &'static str| OtlpError::InvalidEndpoint {
            endpoint: e.chars().take(200).collect(),
            reason,
        };
        if e.len() > MAX_ENDPOINT_LEN {
            return Err(invalid("longer than 2048 bytes"));
        }
        if e.get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        {
            return Err(invalid(
                "https is not supported: this build sends OTLP over plain HTTP (no TLS); \
                 send to a local collector at an http:// endpoint",
            ));
        }
        let Some(rest) = e
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("http://"))
            .map(|_| &e[7..])
        else {
            return Err(invalid("it must start with http://"));
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(invalid("it has no host"));
        }
        if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace or control characters"));
        }
        Ok(format!("{}/v1/{signal}", e.trim_end_matches('/')))
    }
}

/// Why a pipeline could not be built, flushed or shut down.
#[derive(Debug)]
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://host[:port][/path]` URL.
    InvalidEndpoint {
        /// The endpoint given (at most 200 characters of it).
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The OTLP exporter could not be built.
    Exporter(ExporterBuildError),
    /// Flushing or shutting down a provider failed (an export that failed
    /// or timed out, a provider already shut down).
    Sdk {
        /// What was being done (`"metrics flush"`, `"traces shutdown"`, ...).
        what: &'static str,
        /// The SDK's error.
        error: OTelSdkError,
    },
}

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtlpError::InvalidEndpoint { endpoint, reason } => {
                write!(f, "invalid OTLP endpoint {endpoint:?}: {reason}")
            }
            OtlpError::Exporter(e) => write!(f, "the OTLP exporter could not be built: {e}"),
            OtlpError::Sdk { what, error } => write!(f, "OpenTelemetry {what} failed: {error}"),
        }
    }
}

impl std::error::Error for OtlpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OtlpError::InvalidEndpoint { .. } => None,
            OtlpError::Exporter(e) => Some(e),
            OtlpError::Sdk { error, .. } => Some(error),
        }
    }
}

impl From<ExporterBuildError> for OtlpError {
    fn from(e: ExporterBuildError) -> OtlpError {
        OtlpError::Exporter(e)
    }
}

/// A meter provider and a tracer provider exporting over OTLP/HTTP. Call
/// [`OtlpPipeline::shutdown`] before the process exits, or the last batch
/// of spans and the last metrics are lost.
#[derive(Debug)]
pub struct OtlpPipeline {
    /// Metrics: a periodic reader on its own thread.
    pub meter_provider: SdkMeterProvider,
    /// Traces: a batch span processor on its own thread.
    pub tracer_provider: SdkTracerProvider,
}

impl OtlpPipeline {
    /// A meter named `respool`, for [`OtelMetrics`](super::OtelMetrics).
    #[must_use]
    pub fn meter(&self) -> Meter {
        self.meter_provider.meter("respool")
    }

    /// A tracer named `respool`, for [`OtelSpans`](super::OtelSpans).
    #[must_use]
    pub fn tracer(&self) -> Tracer {
        self.tracer_provider.tracer("respool")
    }

    /// Exports what is pending now (blocks until sent or failed).
    ///
    /// # Errors
    /// [`OtlpError::Sdk`] when an export fails (no collector, say).
    pub fn force_flush(&self) -> Result<(), OtlpError> {
        let t = self
            .tracer_provider
            .force_flush()
            .map_err(|error| OtlpError::Sdk {
                what: "traces flush",
                error,
            });
        let m = self
            .meter_provider
            .force_flush()
            .map_err(|error| OtlpError::Sdk {
                what: "metrics flush",
                error,
            });
        t.and(m)
    }

    /// Flushes and stops both providers.
    ///
    /// # Errors
    /// [`OtlpError::Sdk`] when the last export fails, or when already shut
    /// down.
    pub fn shutdown(&self) -> Result<(), OtlpError> {
        let t = self
            .tracer_provider
            .shutdown()
            .map_err(|error| OtlpError::Sdk {
                what: "traces shutdown",
                error,
            });
        let m = self
            .meter_provider
            .shutdown()
            .map_err(|error| OtlpError::Sdk {
                what: "metrics shutdown",
                error,
            });
        t.and(m)
    }
}

/// Builds the OTLP/HTTP pipeline for metrics and traces. Nothing is sent
/// until there is something to export; an unreachable collector shows as
/// errors of [`OtlpPipeline::force_flush`] and in OpenTelemetry's internal
/// log, never as a panic.
///
/// # Errors
/// [`OtlpError::InvalidEndpoint`] for an endpoint that is not `http://`
/// with a host; [`OtlpError::Exporter`] when an exporter cannot be built.
pub fn otlp_pipeline(config: &OtlpConfig) -> Result<OtlpPipeline, OtlpError> {
    let traces = config.signal_url("traces")?;
    let metrics = config.signal_url("metrics")?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let span_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces)
        .with_timeout(config.timeout)
        .build()?;
    let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(metrics)
        .with_timeout(config.timeout)
        .build()?;
    let reader = PeriodicReader::builder(metric_exporter)
        .with_interval(config.metrics_interval)
        .build();
    Ok(OtlpPipeline {
        meter_provider: SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource.clone())
            .build(),
        tracer_provider: SdkTracerProvider::builder()
            .with_batch_exporter(span_exporter)
            .with_resource(resource)
            .build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let url = |e: &str| OtlpConfig::new().endpoint(e).signal_url("traces");
        assert_eq!(
            url("http://localhost:4318").unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            url("http://c:4318/prefix/").unwrap(),
            "http://c:4318/prefix/v1/traces"
        );
        for bad in [
            "",
            "localhost:4318",
            "https://c:4318",
            "http://",
            "http:///x",
            "http://a b",
        ] {
            let err = url(bad).unwrap_err();
            assert!(
                matches!(err, OtlpError::InvalidEndpoint { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("invalid OTLP endpoint"));
        }
        assert!(url(&"http://x/".repeat(1000)).is_err());
    }
}
