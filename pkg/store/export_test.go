package store

// SetSwapTries makes r's Swap give up after n tries to take its locks, so that a test of
// ErrTablesBusy does not wait a minute.
func SetSwapTries(r *Rebuild, n int) { r.tries = n }
