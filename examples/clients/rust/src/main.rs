//! Ask verdict whether a principal may do an action on a resource, as a key
//! service would before every sensitive operation.
//!
//! ```sh
//! verdict-client-example --tcp 127.0.0.1:50051 \
//!     --principal arn:aws:iam::111122223333:user/frank --action kms:Encrypt \
//!     --resource arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
//! verdict-client-example --uds /run/verdict/verdict.sock …
//! verdict-client-example --tcp verdict.keys.svc:50051 --ca ca.pem --cert client.pem --key client.key …
//! ```
//!
//! Prints one line per decision: the decision, the decision id and the
//! deciding statements. Exits 0 when every decision was made (whatever it
//! is), 1 when a call failed: a key service treats a failed call as a deny.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub mod proto {
    tonic::include_proto!("verdict.v1");
}

use proto::authorizer_client::AuthorizerClient;
use proto::{AuthorizeRequest, BatchAuthorizeRequest, Decision};

/// Where to reach verdict, and how.
#[derive(Debug, Default)]
struct Args {
    tcp: Option<String>,
    uds: Option<String>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    server_name: Option<String>,
    principal: String,
    action: String,
    resource: String,
    batch: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--tcp" => args.tcp = Some(value()?),
            "--uds" => args.uds = Some(value()?),
            "--ca" => args.ca = Some(value()?),
            "--cert" => args.cert = Some(value()?),
            "--key" => args.key = Some(value()?),
            "--server-name" => args.server_name = Some(value()?),
            "--principal" => args.principal = value()?,
            "--action" => args.action = value()?,
            "--resource" => args.resource = value()?,
            "--batch" => args.batch = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.tcp.is_some() == args.uds.is_some() {
        return Err("give one of --tcp HOST:PORT or --uds PATH".into());
    }
    Ok(args)
}

/// A channel to verdict. Over TCP with `--ca`, TLS (with `--cert` and
/// `--key`, mutual TLS). On the Unix socket the URI's authority is what
/// HTTP/2 sends as `:authority`: `localhost`, a valid one (the socket's
/// path is not, and verdict would refuse the call with PROTOCOL_ERROR).
async fn channel(args: &Args) -> Result<Channel, Box<dyn std::error::Error>> {
    if let Some(path) = args.uds.clone() {
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        return Ok(Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(connector)
            .await?);
    }
    let addr = args.tcp.as_deref().unwrap_or_default();
    let scheme = if args.ca.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(ca) = &args.ca {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(tokio::fs::read(ca).await?));
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            tls = tls.identity(Identity::from_pem(
                tokio::fs::read(cert).await?,
                tokio::fs::read(key).await?,
            ));
        }
        if let Some(name) = &args.server_name {
            tls = tls.domain_name(name.clone());
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint.connect().await?)
}

fn print(decision: &proto::AuthorizeResponse) {
    let matched: Vec<String> = decision
        .matched
        .iter()
        .map(|m| format!("{}#{}", m.policy_id, m.index.unwrap_or_default()))
        .collect();
    println!(
        "{} {} {}",
        decision.decision().as_str_name(),
        decision.decision_id,
        matched.join(",")
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A failed call is a deny for the caller.
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = AuthorizerClient::new(channel(args).await?);
    let request = AuthorizeRequest {
        principal: args.principal.clone(),
        action: args.action.clone(),
        resource: args.resource.clone(),
        ..Default::default()
    };
    let mut call = tonic::Request::new(request.clone());
    call.set_timeout(Duration::from_secs(2));
    let response = client.authorize(call).await?.into_inner();
    print(&response);
    if args.batch {
        // The same request and its Decrypt twin, decided against one bundle.
        let mut twin = request.clone();
        twin.action = "kms:Decrypt".into();
        let batch = BatchAuthorizeRequest {
            requests: vec![request, twin],
            ..Default::default()
        };
        let responses = client.batch_authorize(batch).await?.into_inner().responses;
        for r in &responses {
            print(r);
        }
        if responses
            .iter()
            .any(|r| r.decision() == Decision::Unspecified)
        {
            return Err("a batch item came back without a decision".into());
        }
    }
    Ok(())
}
