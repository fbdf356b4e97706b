package policy

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/tobira-ac/tobira/internal/credential"
)

// benchCred returns the i-th of a family of certificate credentials with
// 4-byte serials, as on real cards.
func benchCred(i uint32) credential.Credential {
	return credential.Credential{
		Kind:        credential.KindCertSerial,
		IssuerKeyID: keyID(0xB0 + byte(i%3)),
		Serial:      binary.BigEndian.AppendUint32(nil, i|0x1000_0000),
	}
}

// BenchmarkDecide decides against a store of 100k allowlisted and 100k
// revoked certificates, cycling through grants, revocations and misses.
func BenchmarkDecide(b *testing.B) {
	const n = 100_000
	s, _ := openStore(b)
	snap := Snapshot{Version: 1}
	for i := range uint32(n) {
		snap.Allow = append(snap.Allow, Entry{Credential: benchCred(i), Person: "person"})
		r := benchCred(n + i)
		snap.Revoked = append(snap.Revoked, Revocation{IssuerKeyID: r.IssuerKeyID, Serial: r.Serial})
	}
	if err := s.ApplyFull(context.Background(), snap); err != nil {
		b.Fatal(err)
	}
	creds := make([]credential.Credential, 0, 3*1024)
	for i := range uint32(1024) {
		creds = append(creds, benchCred(i*97%n), benchCred(n+i*89%n), benchCred(3*n+i))
	}
	want := []Reason{ReasonEnrolled, ReasonRevoked, ReasonNotEnrolled}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if d := s.Decide(creds[i%len(creds)]); d.Reason != want[i%3] {
			b.Fatalf("Decide(%s) = %+v, want %s", creds[i%len(creds)], d, want[i%3])
		}
		i++
	}
}
