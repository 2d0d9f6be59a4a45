//! How log lines look: text for people (in colour on a terminal), or JSON, one object a line,
//! for log pipelines. Every line a reconcile logs names its object: in text through the
//! `reconcile{namespace=.. name=..}` span, in JSON as the top-level members `namespace` and
//! `name`, where a pipeline indexes them. The event's own fields are under `fields`, the span it
//! is in under `span`.

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The span every reconcile runs in (`reconcile::reconcile`), with fields `namespace` and `name`.
pub const RECONCILE_SPAN: &str = "reconcile";

/// `--log-format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `ansi`: colour (text only).
pub fn init(format: LogFormat, filter: EnvFilter, ansi: bool) {
    match format {
        LogFormat::Json => {
            let mut json = json_subscriber::JsonLayer::stdout();
            json.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
                .with_level("level")
                .with_target("target")
                .with_event("fields")
                .with_current_span("span");
            // Top-level, and never a span's own `name` (which is the span's name in `span`).
            json.add_from_extension_ref::<Object, _, _>("namespace", |o| Some(&o.namespace));
            json.add_from_extension_ref::<Object, _, _>("name", |o| Some(&o.name));
            tracing_subscriber::registry().with(filter).with(ObjectLayer).with(json).init();
        }
        LogFormat::Text => tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).init(),
    }
}

/// The ConsentToken a span works for: taken from a reconcile span's fields, and handed down to
/// every span opened inside it (an HTTP request's, a client's).
#[derive(Clone, Debug, Default)]
struct Object {
    namespace: String,
    name: String,
}

impl Visit for Object {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "namespace" => value.clone_into(&mut self.namespace),
            "name" => value.clone_into(&mut self.name),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

struct ObjectLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ObjectLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let object = if attrs.metadata().name() == RECONCILE_SPAN {
            let mut object = Object::default();
            attrs.record(&mut object);
            Some(object)
        } else {
            span.parent().and_then(|parent| parent.extensions().get::<Object>().cloned())
        };
        if let Some(object) = object {
            span.extensions_mut().insert(object);
        }
    }
}
