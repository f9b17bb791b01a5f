//! The client and messages of verdict's Authorizer, generated from the
//! repository's proto file (protox compiles it: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../../proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile(["verdict/v1/authorizer.proto"], [proto])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
