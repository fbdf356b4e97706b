// Package reader identifies a person by the My Number Card they present:
// it speaks ISO 7816-4 short APDUs to the card's JPKI application, reads the
// token information and the user-authentication certificate, and verifies
// that certificate against a configured set of JPKI trust anchors.
//
// The package is split in layers:
//
//   - Transmitter and Card are the small interfaces the JPKI code needs from
//     a card session. Package reader/pcsc implements them over pcscd (it
//     alone imports github.com/ebfe/scard, so this package is pure Go);
//     package reader/cardsim implements them in process.
//   - Client sends Commands and handles ISO 7816-4 transport details
//     (61xx GET RESPONSE, 6Cxx re-send) and maps status words to errors.
//   - Identify runs the serial-mode exchange and yields an Identity.
//   - Verifier checks certificates against trust anchors and the JPKI
//     user-authentication profile.
//
// Privacy: the package never selects the 券面/住基 applications, never reads
// the signing certificate (EF 0001), never handles the My Number or the four
// basic facts, and never logs a certificate's notAfter (it hints at the
// holder's birthday). Every failure is reported with one of the documented
// sentinel errors so that callers can turn it into a decision reason.
package reader
