//! Random secrets: the API token and Redis passwords.

/// `bytes` random bytes from the OS, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Without OS randomness no secret can be made safely; stopping is right.
    #[expect(clippy::expect_used, reason = "OS randomness is a hard requirement")]
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    hex::encode(buf)
}
