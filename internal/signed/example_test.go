package signed_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tobira-ac/tobira/internal/signed"
)

// HQ signs a command with its private key; a device that pinned HQ's public
// key opens it, and refuses it when the signed bytes were changed or when
// it arrives as another kind of message.
func Example() {
	seed := make([]byte, ed25519.SeedSize) // a fixed key, for a repeatable example
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)

	env, err := signed.Sign("command", []byte(`{"action":"unlock","door":"front"}`), priv)
	if err != nil {
		fmt.Println(err)
		return
	}

	v, err := signed.NewVerifier(pub) // what the device pins (hq.keys)
	if err != nil {
		fmt.Println(err)
		return
	}
	payload, keyID, err := v.Open("command", env)
	fmt.Printf("%s signed by %s, err %v\n", payload, keyID, err)

	_, _, err = v.Open("snapshot", env)
	fmt.Println("as a snapshot:", errors.Is(err, signed.ErrWrongKind))

	var e signed.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		fmt.Println(err)
		return
	}
	e.Payload = []byte(`{"action":"unlock","door":"vault"}`) // the door changed on the way
	forged, _ := json.Marshal(e)
	_, _, err = v.Open("command", forged)
	fmt.Println("forged:", errors.Is(err, signed.ErrBadSignature))
	// Output:
	// {"action":"unlock","door":"front"} signed by 139e3940e64b5491, err <nil>
	// as a snapshot: true
	// forged: true
}
