package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
)

// The sources' Verify functions read their own header formats and share the comparison: every
// configured secret is tried, so that a secret rotates by listing the new one beside the old,
// an empty secret matches nothing, and no secret refuses everything.

// MatchHMAC reports whether any of sigs is the HMAC (with newHash) of body under any of
// secrets. Every pair is compared in constant time, so the time taken says nothing about which
// secret or signature matched.
func MatchHMAC(newHash func() hash.Hash, secrets []string, body []byte, sigs ...[]byte) bool {
	matched := false
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		mac := hmac.New(newHash, []byte(secret))
		mac.Write(body)
		want := mac.Sum(nil)
		for _, sig := range sigs {
			matched = hmac.Equal(want, sig) || matched
		}
	}
	return matched
}

// MatchToken reports whether token is one of secrets. Every secret is compared in constant
// time, both hashed first so that not even a secret's length leaks.
func MatchToken(secrets []string, token string) bool {
	got := sha256.Sum256([]byte(token))
	ok := 0
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		want := sha256.Sum256([]byte(secret))
		ok |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return ok == 1
}
