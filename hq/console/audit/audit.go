// Package audit is the console's audit log: every admin action (login,
// logout, failed login, each change, each view of personal data) with
// who, when, from where, and the before and after of what changed.
//
// The log is tamper-evident: each entry carries the SHA-256 of the entry
// before it and its own hash over that and its fields, so editing or
// deleting an entry breaks the chain at that point (Verify). Cutting off
// the newest entries leaves a valid chain: keep the head hash that Verify
// returns somewhere else (an export, a ticket) to detect that too.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrTampered means the chain of hashes is broken: an entry was edited,
// inserted or deleted.
var ErrTampered = errors.New("audit log tampered with")

// Entry is one admin action.
type Entry struct {
	// Seq numbers the entries from 1, without gaps.
	Seq uint64 `json:"seq"`
	// Time is when it happened (UTC).
	Time time.Time `json:"time"`
	// Actor is the account that acted (for a failed login: the name
	// tried).
	Actor string `json:"actor"`
	// Role is the actor's role then ("" when unknown).
	Role string `json:"role,omitempty"`
	// Addr is the client address the request came from.
	Addr string `json:"addr,omitempty"`
	// Action is what was done, e.g. "login", "command".
	Action string `json:"action"`
	// Target is what it was done to, e.g. "tokyo/gate-1 door-a".
	Target string `json:"target,omitempty"`
	// Before is the state before a change (often JSON; "" for none).
	Before string `json:"before,omitempty"`
	// After is the state after a change, or the outcome.
	After string `json:"after,omitempty"`
	// Prev is the hex SHA-256 hash of the previous entry (64 zeros for
	// the first).
	Prev string `json:"prev"`
	// Hash is the hex SHA-256 of this entry with Hash empty, as JSON.
	Hash string `json:"hash"`
}

// genesis is Prev of the first entry.
var genesis = hex.EncodeToString(make([]byte, sha256.Size))

// hash returns e's hash: SHA-256 over its JSON with Hash empty.
func (e Entry) hash() string {
	e.Hash = ""
	b, _ := json.Marshal(e) // an Entry always encodes
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Chain is where a Log keeps its entries: a bbolt bucket (New) or a
// PostgreSQL table (hq/pgstore). Every implementation numbers the entries
// 1, 2, 3, ... as one chain also with several writers (processes) at once.
type Chain interface {
	// Append calls link with the newest entry's sequence number and hash
	// (0 and "" for an empty log) while no other writer can append, stores
	// the entry link returns and returns it.
	Append(link func(lastSeq uint64, lastHash string) (Entry, error)) (Entry, error)
	// Page returns up to limit entries, newest first, older than seq
	// before (0: from the newest).
	Page(before uint64, limit int) ([]Entry, error)
	// Each calls fn for every entry, oldest first; an error from fn ends
	// it and is returned. An entry that cannot be decoded is an error
	// wrapping ErrTampered.
	Each(fn func(Entry) error) error
}

// Log is the audit log, kept in a Chain.
type Log struct {
	chain Chain
	now   func() time.Time
}

// NewLog returns the audit log kept in c. now stamps entries (nil:
// time.Now).
func NewLog(c Chain, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{chain: c, now: now}
}

// Append stamps e with the next sequence number, the time (when zero),
// the previous hash and its own, stores it and returns it.
func (l *Log) Append(e Entry) (Entry, error) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC()
	e, err := l.chain.Append(func(lastSeq uint64, lastHash string) (Entry, error) {
		e.Seq, e.Prev = lastSeq+1, lastHash
		if lastSeq == 0 {
			e.Prev = genesis
		}
		e.Hash = e.hash()
		return e, nil
	})
	if err != nil {
		return Entry{}, fmt.Errorf("append %s by %s to the audit log: %w", e.Action, e.Actor, err)
	}
	return e, nil
}

// Page returns up to limit entries, newest first, older than seq before
// (0: from the newest).
func (l *Log) Page(before uint64, limit int) ([]Entry, error) {
	return l.chain.Page(before, limit)
}

// Each calls fn for every entry, oldest first; an error from fn ends it
// and is returned.
func (l *Log) Each(fn func(Entry) error) error {
	return l.chain.Each(fn)
}

// Verify checks the whole chain: sequence numbers without gaps, each
// entry's Prev the hash of the one before, each Hash its own. It returns
// how many entries there are and the newest hash (the head to keep
// elsewhere), or an error wrapping ErrTampered naming the first broken
// entry.
func (l *Log) Verify() (n uint64, head string, err error) {
	head = genesis
	err = l.Each(func(e Entry) error {
		switch {
		case e.Seq != n+1:
			return fmt.Errorf("%w: entry %d follows entry %d", ErrTampered, e.Seq, n)
		case e.Prev != head:
			return fmt.Errorf("%w: entry %d does not follow the hash of entry %d", ErrTampered, e.Seq, n)
		case e.Hash != e.hash():
			return fmt.Errorf("%w: entry %d does not match its hash", ErrTampered, e.Seq)
		}
		n, head = e.Seq, e.Hash
		return nil
	})
	return n, head, err
}
