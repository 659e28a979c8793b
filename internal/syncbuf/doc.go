// Package syncbuf has Buffer, a text buffer that several goroutines may
// write to at once: the log sink of tests whose code logs from background
// goroutines (a cadence, a reload), read by the test while they run.
package syncbuf
