#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_tokens::keyring::state::{KeyState, RingState};

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = RingState::from_json(data) {
        // An accepted state names exactly one current key, kids that are plain file names,
        // and writes back to a file that reads as the same state.
        assert_eq!(
            state
                .keys
                .iter()
                .filter(|k| k.state == KeyState::Current)
                .count(),
            1
        );
        assert!(state.keys.iter().all(|k| !k.kid.contains(['/', '.', '\\'])));
        let again = RingState::from_json(&state.to_json()).expect("round trip");
        assert_eq!(again, state);
    }
});
