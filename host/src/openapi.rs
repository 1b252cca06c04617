//! The OpenAPI 3.1 document, generated from the handlers' annotations, and
//! the interactive docs page that the binary serves itself (no CDN).

use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{health, introspect, jwks, metadata, revoke, tasks, token, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TaskFlow",
        description = "Task API whose authentication policy runs in a WebAssembly component. \
            Get a token from `POST /token` (OAuth 2.0 password grant; renew it with \
            the refresh grant) and send it as `Authorization: Bearer <token>`."
    ),
    paths(
        token::issue_token,
        revoke::revoke,
        introspect::introspect,
        jwks::jwks,
        metadata::metadata,
        users::me,
        tasks::list,
        tasks::create,
        tasks::get,
        tasks::update,
        tasks::delete,
        health::health,
        health::metrics,
    ),
    modifiers(&PasswordFlow),
    tags(
        (name = "auth", description = "Tokens: issue, refresh, revoke and introspect; public keys and server metadata"),
        (name = "tasks", description = "Your tasks"),
        (name = "users", description = "Who you are"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The OAuth2 password flow through `/token`, with every scope a route needs.
struct PasswordFlow;

impl Modify for PasswordFlow {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scopes = Scopes::from_iter(crate::auth::SCOPES.iter().copied());
        let scheme = OAuth2::with_description(
            [Flow::Password(Password::with_refresh_url(
                "/token", scopes, "/token",
            ))],
            "Send the access token as `Authorization: Bearer <token>`.",
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("oauth2", SecurityScheme::OAuth2(scheme));
    }
}

/// `GET /openapi.json` and the interactive page at `/docs`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .url("/openapi.json", ApiDoc::openapi())
        .into()
}
