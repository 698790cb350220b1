#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_tls::svid::peer_identity;

fuzz_target!(|data: &[u8]| {
    if let Ok(peer) = peer_identity(data) {
        assert_eq!(peer.x5t_s256.len(), 43);
    }
});
