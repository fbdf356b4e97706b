package firmware

import (
	"testing"
)

// FuzzVerify feeds arbitrary bytes to the envelope and manifest parser: it
// must not panic, and whatever it accepts must be a valid manifest.
func FuzzVerify(f *testing.F) {
	key := testKey("release")
	good := manifestForBytes("1.2.3", []byte("binary"))
	good.Targets = []string{"group:lobby"}
	env, err := Sign(good, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"manifest":"e30=","signatures":[{"key_id":"x","sig":""}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	v, err := NewVerifier(pub(key))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if e, err := ParseEnvelope(data); err == nil && (len(e.Manifest) == 0 || len(e.Signatures) == 0) {
			t.Fatalf("ParseEnvelope accepted %+v", e)
		}
		m, err := v.Verify(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Verify accepted an invalid manifest: %v", err)
		}
	})
}

// FuzzParseState: a corrupted state file is refused or decoded into
// versions that parse.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"committed":"1.0.0","pending":"2.0.0","boot_attempts":2,"bad":["1.5.0"]}`))
	f.Add([]byte(`{"pending":"../x"}`))
	f.Add([]byte(`{"boot_attempts":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data, "fuzz")
		if err != nil {
			return
		}
		for _, v := range []string{st.Committed, st.Pending, st.Previous, st.Floor, st.PendingFloor} {
			if _, err := optVersion("v", v); err != nil {
				t.Fatalf("accepted state with version %q", v)
			}
		}
		if st.BootAttempts < 0 {
			t.Fatalf("accepted negative attempts")
		}
	})
}

// FuzzContentRange: the Content-Range parser never panics.
func FuzzContentRange(f *testing.F) {
	f.Add("bytes 0-99/100")
	f.Add("bytes -")
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := contentRangeStart(s); err == nil && n < 0 {
			t.Fatalf("negative start %d from %q", n, s)
		}
	})
}
