//! Build steps:
//! - gRPC code from `proto/` without a system `protoc` (protox compiles the
//!   files), plus the descriptor set served by reflection;
//! - the example bundle (`examples/bundles/kms`) embedded in the binary, so
//!   that `verdict serve` works from any directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use protox::prost::Message as _;

fn files(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.file_type()?.is_dir() {
            files(&e.path(), &rel, out)?;
        } else {
            out.push((rel, e.path()));
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=examples/bundles/kms");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile(["verdict/v1/authorizer.proto"], ["proto"])?;
    std::fs::write(out.join("verdict_descriptor.bin"), fds.encode_to_vec())?;
    // Messages and the client.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds.clone())?;
    // The server, on the same message types, except that `Authorize` answers
    // with `proto::reply::Reply` (which can carry a cache entry's encoded
    // response; the wire format is the same message).
    let server = out.join("server");
    std::fs::create_dir_all(&server)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&server)
        .extern_path(
            ".verdict.v1.AuthorizeResponse",
            "crate::proto::reply::Reply",
        )
        .extern_path(".verdict.v1", "crate::proto")
        .codec_path("crate::proto::codec::Codec")
        .compile_fds(fds)?;

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("examples/bundles/kms");
    let mut list = Vec::new();
    files(&root, "", &mut list)?;
    let mut code = String::from(
        "/// The example bundle's files: (path inside the bundle, content).\npub const FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in list {
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            path.display().to_string()
        )?;
    }
    code.push_str("];\n");
    std::fs::write(out.join("embedded_bundle.rs"), code)?;
    Ok(())
}
