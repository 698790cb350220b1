//! `secmesh ca init|issue|revoke|crl`: the development CA.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secmesh_core::{SpiffeId, TrustDomain};
use secmesh_tls::ca::{Ca, CaError};

use crate::io::{REJECTED, USAGE, fail, path_shown, read_text, write_private, write_public};

/// `secmesh ca ...`
#[derive(Subcommand, Debug)]
pub(crate) enum CaCommand {
    /// Create a CA (key and certificate) for a trust domain in a directory.
    Init {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The trust domain, e.g. `mesh.test`.
        #[arg(long)]
        trust_domain: TrustDomain,
    },
    /// Issue an X.509-SVID and its private key.
    Issue(IssueArgs),
    /// Revoke a certificate this CA issued.
    Revoke {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate's serial (hex, as `ca issue` prints it).
        #[arg(long, conflicts_with = "cert", required_unless_present = "cert")]
        serial: Option<String>,
        /// Or the certificate file (PEM).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Write the CRL of everything revoked.
    Crl {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the CRL (PEM).
        #[arg(long)]
        out: PathBuf,
        /// How long the CRL is valid, in days.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
}

/// `secmesh ca issue` options.
#[derive(Args, Debug)]
pub(crate) struct IssueArgs {
    /// The CA directory.
    #[arg(long)]
    dir: PathBuf,
    /// The workload's SPIFFE ID, in the CA's trust domain.
    #[arg(long)]
    spiffe_id: SpiffeId,
    /// Where to write the certificate (PEM).
    #[arg(long)]
    cert_out: PathBuf,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    key_out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 30)]
    days: u32,
}

fn ca_fail(e: CaError) -> ExitCode {
    match e {
        // The request was understood and refused.
        CaError::WrongTrustDomain { .. } | CaError::UnknownSerial(_) => fail(REJECTED, e),
        _ => fail(USAGE, e),
    }
}

/// The serial of a PEM certificate, lowercase hex.
fn serial_of(path: &std::path::Path) -> Result<String, String> {
    use base64::Engine as _;
    let pem = read_text(path)?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| format!("{} is not a PEM certificate", path_shown(path)))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| format!("{} is not a certificate", path_shown(path)))?;
    Ok(cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub(crate) fn run(cmd: CaCommand) -> ExitCode {
    match cmd {
        CaCommand::Init { dir, trust_domain } => match Ca::init(&dir, trust_domain) {
            Ok(ca) => {
                println!("{}", path_shown(&dir.join("ca.crt")));
                let _ = ca;
                ExitCode::SUCCESS
            }
            Err(e) => ca_fail(e),
        },
        CaCommand::Issue(a) => {
            let ca = match Ca::open(&a.dir) {
                Ok(c) => c,
                Err(e) => return ca_fail(e),
            };
            match ca.issue(&a.spiffe_id, a.days) {
                Ok(issued) => match write_private(&a.key_out, issued.key_pem.as_bytes())
                    .and_then(|()| write_public(&a.cert_out, issued.cert_pem.as_bytes()))
                {
                    Ok(()) => {
                        println!("{}", issued.serial);
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(USAGE, e),
                },
                Err(e) => ca_fail(e),
            }
        }
        CaCommand::Revoke { dir, serial, cert } => {
            let serial = match (serial, cert) {
                (Some(s), _) => s,
                (None, Some(c)) => match serial_of(&c) {
                    Ok(s) => s,
                    Err(e) => return fail(USAGE, e),
                },
                (None, None) => return fail(USAGE, "give --serial or --cert"),
            };
            match Ca::open(&dir).and_then(|ca| ca.revoke(&serial)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => ca_fail(e),
            }
        }
        CaCommand::Crl { dir, out, days } => match Ca::open(&dir).and_then(|ca| ca.crl(days)) {
            Ok(pem) => match write_public(&out, pem.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(USAGE, e),
            },
            Err(e) => ca_fail(e),
        },
    }
}
