//! Features: products built on the engine's public API and the event bus alone (the
//! tasks, reminders and notifications of `kairos-tasks`, say), which a server serves
//! without knowing them. A feature brings its routes (described, like every route),
//! the access rule of each, and duties that run beside the engine until shutdown. It
//! never reaches into the store's tables or another feature: it could leave as its own
//! service, talking to Kairos through the same API and events.

use crate::engine::Engine;
use crate::http::access::Rule;
use utoipa_axum::router::OpenApiRouter;

/// A feature a server serves (see [`crate::Server::feature`]).
pub trait Feature: Send + Sync + 'static {
    /// Its routes, each registered with `utoipa_axum`'s `routes!` so none is served
    /// undescribed. They get the engine as state and the server's layers (auth, limits,
    /// request ids, metrics) around them.
    fn routes(&self) -> OpenApiRouter<Engine>;

    /// Who may call each of its routes: a route without a rule stops the server from
    /// building, as the server's own do.
    fn rules(&self) -> Vec<Rule>;

    /// Starts its duties on the running engine, with [`Engine::spawn`] so the server
    /// waits for them at shutdown (they watch [`Engine::shutting_down`]).
    fn start(&self, engine: &Engine);
}
