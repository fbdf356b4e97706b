package reader_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
)

// Identification in mode serial on the in-process card simulator (a real
// door passes a reader/pcsc card instead): the card's user-authentication
// certificate is read, checked against the trust anchors and turned into a
// credential of issuer key ID and serial.
func ExampleIdentifier_Identify() {
	anchors, err := reader.LoadTrustAnchors("testdata/ca-gen1.pem")
	if err != nil {
		log.Fatal(err)
	}
	v, err := reader.NewVerifier(anchors)
	if err != nil {
		log.Fatal(err)
	}
	ident, err := reader.NewIdentifier(reader.IdentifierConfig{Mode: reader.ModeSerial, Verifier: v})
	if err != nil {
		log.Fatal(err)
	}
	cert, err := os.ReadFile("testdata/auth-gen1.der")
	if err != nil {
		log.Fatal(err)
	}
	card := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: cert})

	id, err := ident.Identify(context.Background(), card, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("token:", id.Token.Label)
	fmt.Println("serial:", id.Credential.SerialHex())
	fmt.Println("kind:", id.Credential.Kind, "issuer key ID bytes:", len(id.Credential.IssuerKeyID))
	fmt.Println("APDUs:", id.APDUs)
	// Output:
	// token: JPKIAPICCTOKEN2
	// serial: 1a2b3c4d
	// kind: cert issuer key ID bytes: 20
	// APDUs: 9
}
