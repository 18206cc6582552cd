//! The C ABI called from Rust, as a C caller would call it, against the
//! real server: every entry point, its error codes and messages, NULL and
//! malformed arguments, and that nothing panics across the boundary.
//! (`c_program.rs` runs a real C program; this one sees inside the calls.)

#[allow(dead_code)]
#[path = "../../../tests/e2e/harness.rs"]
mod harness;

use ledger_client_c::*;
use std::ffi::{c_char, CStr, CString};
use std::ptr;

fn last_error() -> String {
    // SAFETY: the library returns a valid string, live until the next call.
    unsafe { CStr::from_ptr(ll_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Takes a string the library returned, and frees it through the library.
fn take(s: *mut c_char) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: a valid string from the library, freed once below.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    unsafe { ll_string_free(s) };
    Some(text)
}

#[test]
fn every_entry_point_against_the_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sys, license, alice, bob) = runtime.block_on(async {
        let sys = harness::System::start().await;
        let license = sys.app.issue("acme", 1, 60).await;
        let alice = harness::token("alice", "acme", false).await;
        let bob = harness::token("bob", "acme", false).await;
        (sys, license, alice, bob)
    });
    let url = c(&format!("http://{}", sys.app.addr));
    let issuer = c("https://license-ledger.test");

    // SAFETY (the whole test): arguments are valid C strings or NULL, and
    // every pointer the library returned is used and freed as documented.
    unsafe {
        // Arguments checked, not trusted.
        assert!(ll_client_new(ptr::null(), c("t").as_ptr(), ptr::null()).is_null());
        assert_eq!(ll_last_status(), LlStatus::LlErrorInvalid);
        assert!(
            last_error().contains("base_url is NULL"),
            "{}",
            last_error()
        );
        assert!(ll_client_new(c("ftp://x").as_ptr(), c("t").as_ptr(), ptr::null()).is_null());
        assert!(last_error().contains("base URL"), "{}", last_error());
        let not_utf8 = [0xffu8, 0xfe, 0];
        assert!(ll_client_new(not_utf8.as_ptr().cast(), c("t").as_ptr(), ptr::null()).is_null());
        assert!(last_error().contains("not UTF-8"));

        let client = ll_client_new(url.as_ptr(), c(&alice).as_ptr(), issuer.as_ptr());
        assert!(!client.is_null(), "{}", last_error());
        assert!(ll_acquire(ptr::null(), ptr::null(), c("h").as_ptr()).is_null());
        assert!(ll_acquire(client, c("not-a-uuid").as_ptr(), c("h").as_ptr()).is_null());
        assert!(last_error().contains("not a UUID"));
        assert!(ll_acquire(client, ptr::null(), ptr::null()).is_null());
        assert!(last_error().contains("hardware_id is NULL"));

        // A seat: status, session id, token, offline verification.
        let lease = ll_acquire(client, c(&license).as_ptr(), c("alice-pc").as_ptr());
        assert!(!lease.is_null(), "{}", last_error());
        assert_eq!(ll_lease_status(lease), LlLeaseState::LlLeaseOk);
        let session = take(ll_lease_session_id(lease)).unwrap();
        assert_eq!(session.len(), 36);
        let token = take(ll_lease_token(lease)).expect("a token");
        let mut exp = 0i64;
        assert_eq!(
            ll_verify(client, c(&token).as_ptr(), &mut exp),
            LlStatus::LlOk
        );
        assert!(exp > 0);
        let tampered = token.replacen('.', ".x", 1);
        assert_eq!(
            ll_verify(client, c(&tampered).as_ptr(), ptr::null_mut()),
            LlStatus::LlErrorToken
        );
        assert!(!last_error().is_empty());
        assert_eq!(
            ll_verify(client, ptr::null(), ptr::null_mut()),
            LlStatus::LlErrorInvalid
        );
        assert_eq!(
            ll_verify(ptr::null(), c(&token).as_ptr(), ptr::null_mut()),
            LlStatus::LlErrorInvalid
        );

        // The only seat is held: another user is refused, with the reason.
        let other = ll_client_new(url.as_ptr(), c(&bob).as_ptr(), issuer.as_ptr());
        assert!(ll_acquire(other, c(&license).as_ptr(), c("bob-pc").as_ptr()).is_null());
        assert_eq!(ll_last_status(), LlStatus::LlErrorNoSeats);
        assert!(last_error().contains("no seat"), "{}", last_error());
        assert_eq!(ll_last_retry_after(), -1, "no hint without strict seats");
        let stranger = ll_client_new(url.as_ptr(), c("not-a-jwt").as_ptr(), ptr::null());
        assert!(ll_acquire(stranger, c(&license).as_ptr(), c("x").as_ptr()).is_null());
        assert_eq!(ll_last_status(), LlStatus::LlErrorUnauthorized);
        let unknown = c("00000000-0000-4000-8000-000000000000");
        assert!(ll_acquire(other, unknown.as_ptr(), c("x").as_ptr()).is_null());
        assert_eq!(ll_last_status(), LlStatus::LlErrorNotFound);

        // Waiting: no queue in the policy is a plain refusal; with one, the
        // wait runs out while the seat stays held.
        let waiting =
            |secs| ll_acquire_waiting(other, c(&license).as_ptr(), c("bob-pc").as_ptr(), secs);
        assert!(waiting(5).is_null());
        assert_eq!(ll_last_status(), LlStatus::LlErrorNoSeats);
        runtime.block_on(async {
            let vendor = harness::token("vendor", "acme", true).await;
            let path = format!("/api/v1/admin/licenses/{license}/policy");
            let body = serde_json::json!({ "max_queue_wait_secs": 60 });
            let a = sys
                .app
                .call(reqwest::Method::PUT, &path, Some(&vendor), Some(body))
                .await;
            assert!(a.status.is_success(), "{}", a.body);
        });
        let started = std::time::Instant::now();
        assert!(waiting(1).is_null());
        assert_eq!(ll_last_status(), LlStatus::LlErrorNoSeats);
        assert!(last_error().contains("within the wait"), "{}", last_error());
        assert!(started.elapsed() >= std::time::Duration::from_secs(1));
        assert!(ll_acquire_waiting(ptr::null(), ptr::null(), c("h").as_ptr(), 1).is_null());
        assert_eq!(ll_last_status(), LlStatus::LlErrorInvalid);

        // Released: the other user gets the seat.
        assert_eq!(ll_release(lease), LlStatus::LlOk);
        let bobs = waiting(5);
        assert!(!bobs.is_null(), "{}", last_error());
        assert_eq!(ll_release(bobs), LlStatus::LlOk);

        // NULL is harmless where documented.
        assert_eq!(ll_release(ptr::null_mut()), LlStatus::LlOk);
        assert_eq!(ll_lease_status(ptr::null()), LlLeaseState::LlLeaseLost);
        assert!(ll_lease_token(ptr::null()).is_null());
        assert!(ll_lease_session_id(ptr::null()).is_null());
        ll_string_free(ptr::null_mut());
        ll_client_free(ptr::null_mut());
        for client in [client, other, stranger] {
            ll_client_free(client);
        }
    }
    runtime.block_on(sys.cleanup());
}
