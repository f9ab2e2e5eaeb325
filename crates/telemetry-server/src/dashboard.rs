//! The dashboard: a web page served at `/`, its assets built into the binary.

use axum::Router;

use crate::state::AppState;

/// The dashboard's routes.
pub fn router() -> Router<AppState> {
    Router::new()
}
