//! The Lambda function: wires the environment to [`weir::lambda::handle_invocation`]
//! (stream batches and backfill tasks).

use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    weir::telemetry::init_lambda();
    // A plugin compiled at cold start costs the invocation that waits for it: a warning,
    // so operators precompile (`weir compile`). The command line logs it as info.
    weir_runtime::plugin::CompileNotice::Warn.set_process_default();
    let function = weir::lambda::Function::from_env().await.map_err(|e| {
        tracing::error!("weir cannot start: {e:#}");
        e
    })?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event| {
        weir::lambda::handle_invocation(function, event)
    }))
    .await
}
