/* Holds a seat from C: acquire, keep it while heartbeats run in the
 * background, verify the license token offline, release.
 *
 *   LL_URL=https://licenses.example.com LL_BEARER=<ID token> \
 *   LL_LICENSE=<license uuid> [LL_ISSUER=<TOKEN_ISSUER>] [LL_HOLD_SECS=N] ./hold_seat
 *
 * Exit codes: 0 held and released, 2 no seat free, 1 any other error.
 * Built and run against the server by client/ffi/tests/c_program.rs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_client.h"

int main(void) {
    const char *url = getenv("LL_URL");
    const char *bearer = getenv("LL_BEARER");
    const char *license = getenv("LL_LICENSE"); /* NULL: the tenant's only license */
    const char *issuer = getenv("LL_ISSUER");   /* NULL: the server's default */
    const char *hold = getenv("LL_HOLD_SECS");

    ll_client *client = ll_client_new(url, bearer, issuer);
    if (client == NULL) {
        fprintf(stderr, "client: %s\n", ll_last_error());
        return 1;
    }
    ll_lease *lease = ll_acquire(client, license, "c-example-host");
    if (lease == NULL) {
        int no_seats = ll_last_status() == LL_ERROR_NO_SEATS;
        fprintf(stderr, "acquire: %s (retry after %lld s)\n", ll_last_error(),
                (long long)ll_last_retry_after());
        ll_client_free(client);
        return no_seats ? 2 : 1;
    }
    char *session = ll_lease_session_id(lease);
    printf("session %s\n", session);
    ll_string_free(session);

    /* Heartbeats keep the seat while the application works. */
    if (hold != NULL) {
        sleep((unsigned)atoi(hold));
    }
    printf("state %d\n", (int)ll_lease_status(lease));

    char *token = ll_lease_token(lease);
    int64_t expires_at = 0;
    if (token == NULL || ll_verify(client, token, &expires_at) != LL_OK) {
        fprintf(stderr, "token: %s\n", token == NULL ? "none yet" : ll_last_error());
        ll_string_free(token);
        ll_release(lease);
        ll_client_free(client);
        return 1;
    }
    printf("token verified, expires at %lld\n", (long long)expires_at);

    /* A token altered anywhere does not verify. */
    size_t n = strlen(token);
    token[n - 3] = token[n - 3] == 'A' ? 'B' : 'A';
    printf("tampered token: %s\n", ll_verify(client, token, NULL) == LL_ERROR_TOKEN ? "rejected" : "ACCEPTED");
    ll_string_free(token);

    if (ll_release(lease) != LL_OK) {
        fprintf(stderr, "release: %s\n", ll_last_error());
        ll_client_free(client);
        return 1;
    }
    puts("released");
    ll_client_free(client);
    return 0;
}
