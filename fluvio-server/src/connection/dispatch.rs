//! Requests answered with one response, dispatched by type: each request
//! type of `fluvio-protocol` that is answered once implements [`Handle`]
//! (the admin kinds in `admin.rs`, produce in `produce.rs`), and
//! [`answer`] turns a decoded request into its response frame. A stream
//! (`stream.rs`) and authentication (`session.rs`) are the serve loop's own.

use std::future::Future;

use fluvio_protocol::requests::Request;
use fluvio_protocol::{AnyRequest, Frame};

use super::error::{ServerError, bad_frame, error_frame};
use super::session::Session;
use crate::ServerContext;

/// How the server answers one request type.
pub(super) trait Handle: Request + Sized {
    /// Only an admin may make this request: it changes what everyone sees.
    const ADMIN_ONLY: bool = false;

    /// Carries out the request for `session`. Authentication and the admin
    /// role are checked before this is called; what else the principal may
    /// do (its topics) is the handler's to check.
    fn handle(
        self,
        context: &ServerContext,
        session: &Session,
    ) -> impl Future<Output = Result<Self::Response, ServerError>> + Send;
}

/// The answer to `request`: its response, or the error it met.
pub(super) async fn answer(context: &ServerContext, session: &Session, id: u32, request: AnyRequest) -> Frame {
    match request {
        AnyRequest::CreateTopic(request) => run(context, session, id, request).await,
        AnyRequest::DeleteTopic(request) => run(context, session, id, request).await,
        AnyRequest::ListTopics(request) => run(context, session, id, request).await,
        AnyRequest::Produce(request) => run(context, session, id, request).await,
        AnyRequest::CreateSmartModule(request) => run(context, session, id, request).await,
        AnyRequest::ListSmartModules(request) => run(context, session, id, request).await,
        AnyRequest::DeleteSmartModule(request) => run(context, session, id, request).await,
        AnyRequest::GetSmartModule(request) => run(context, session, id, request).await,
        AnyRequest::CreateConnector(request) => run(context, session, id, request).await,
        AnyRequest::ListConnectors(request) => run(context, session, id, request).await,
        AnyRequest::DeleteConnector(request) => run(context, session, id, request).await,
        AnyRequest::ConnectorLogs(request) => run(context, session, id, request).await,
        AnyRequest::CommitOffset(request) => run(context, session, id, request).await,
        AnyRequest::FetchOffset(request) => run(context, session, id, request).await,
        AnyRequest::ListConsumers(request) => run(context, session, id, request).await,
        AnyRequest::ListConsumersPage(request) => run(context, session, id, request).await,
        AnyRequest::DeleteConsumer(request) => run(context, session, id, request).await,
        AnyRequest::DeleteConsumerOffset(request) => run(context, session, id, request).await,
        AnyRequest::ServerInfo(request) => run(context, session, id, request).await,
        AnyRequest::DescribeSmartModules(request) => run(context, session, id, request).await,
        AnyRequest::ListServers(request) => run(context, session, id, request).await,
        AnyRequest::CreateDerivedTopic(request) => run(context, session, id, request).await,
        AnyRequest::ListDerivedTopics(request) => run(context, session, id, request).await,
        AnyRequest::ResumeDerivedTopic(request) => run(context, session, id, request).await,
        AnyRequest::StreamFetch(_) | AnyRequest::Authenticate(_) => {
            error_frame(id, &bad_frame("unexpected request kind"))
        }
    }
}

async fn run<R: Handle>(context: &ServerContext, session: &Session, id: u32, request: R) -> Frame {
    let result = async {
        session.principal()?;
        if R::ADMIN_ONLY {
            session.require_admin(R::KIND)?;
        }
        request.handle(context, session).await
    };
    frame_for::<R>(id, result.await)
}

/// The frame that answers request `id` of kind `R`: its response, or the
/// error it met.
pub(super) fn frame_for<R: Request>(id: u32, result: Result<R::Response, ServerError>) -> Frame {
    match result {
        Ok(response) => Frame::response::<R>(id, response),
        Err(error) => error_frame(id, &error),
    }
}
