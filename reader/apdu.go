package reader

import (
	"context"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// Status words used by the JPKI application and by ISO 7816-4 transport.
const (
	// SWOK is normal processing (90 00).
	SWOK uint16 = 0x9000
	// SWEndOfFile warns that the end of the file was reached before Ne bytes
	// were read (62 82); the data that was there is returned.
	SWEndOfFile uint16 = 0x6282
	// SWWrongLength is a wrong Lc or Le (67 00).
	SWWrongLength uint16 = 0x6700
	// SWCommandIncompatible is a command incompatible with the file
	// structure (69 81).
	SWCommandIncompatible uint16 = 0x6981
	// SWSecurityNotSatisfied is "security status not satisfied" (69 82): a
	// PIN or password must be verified first.
	SWSecurityNotSatisfied uint16 = 0x6982
	// SWAuthBlocked is "authentication method blocked" (69 84): no PIN tries
	// left.
	SWAuthBlocked uint16 = 0x6984
	// SWNoCurrentEF is "command not allowed, no current EF" (69 86).
	SWNoCurrentEF uint16 = 0x6986
	// SWFileNotFound is "file or application not found" (6A 82).
	SWFileNotFound uint16 = 0x6A82
	// SWWrongP1P2 is "incorrect parameters P1-P2" (6A 86).
	SWWrongP1P2 uint16 = 0x6A86
	// SWWrongOffset is "wrong parameters P1-P2", offset outside the EF (6B 00).
	SWWrongOffset uint16 = 0x6B00
	// SWINSNotSupported is "instruction not supported" (6D 00).
	SWINSNotSupported uint16 = 0x6D00
	// SWCLANotSupported is "class not supported" (6E 00).
	SWCLANotSupported uint16 = 0x6E00
)

// statusText returns the ISO 7816-4 meaning of sw, or "".
func statusText(sw uint16) string {
	switch {
	case sw == SWOK:
		return "ok"
	case sw == SWEndOfFile:
		return "end of file reached"
	case sw == SWWrongLength:
		return "wrong length"
	case sw == SWCommandIncompatible:
		return "command incompatible with file structure"
	case sw == SWSecurityNotSatisfied:
		return "security status not satisfied"
	case sw == SWAuthBlocked:
		return "authentication method blocked"
	case sw == SWNoCurrentEF:
		return "no current EF"
	case sw == SWFileNotFound:
		return "file or application not found"
	case sw == SWWrongP1P2:
		return "wrong P1-P2"
	case sw == SWWrongOffset:
		return "offset outside the EF"
	case sw == SWINSNotSupported:
		return "instruction not supported"
	case sw == SWCLANotSupported:
		return "class not supported"
	case sw&0xFFF0 == 0x63C0:
		return fmt.Sprintf("verification failed, %d tries left", sw&0x0F)
	case sw&0xFF00 == 0x6100:
		return "more data available"
	case sw&0xFF00 == 0x6C00:
		return "wrong Le"
	}
	return ""
}

// Short APDU limits (ISO 7816-4, short length fields only: extended length
// is unverified on real My Number Cards).
const (
	// MaxCommandData is the most data bytes a short command carries.
	MaxCommandData = 255
	// MaxResponseData is the most data bytes a short response carries.
	MaxResponseData = 256
	// maxChainedData bounds the data collected through 61xx GET RESPONSE
	// chaining, so a misbehaving card cannot make the client loop or grow
	// memory without end.
	maxChainedData = 16 * MaxResponseData
	// maxGetResponse bounds the number of GET RESPONSE commands for one
	// command, so a card answering 61xx without data cannot loop forever.
	maxGetResponse = 32
)

// Command is one short ISO 7816-4 command APDU.
type Command struct {
	// Name describes the command in errors, e.g. "READ BINARY EF 000A at
	// offset 512". It must not contain secret data.
	Name string
	// CLA, INS, P1 and P2 are the header bytes.
	CLA, INS, P1, P2 byte
	// Data is the command data, at most MaxCommandData bytes.
	Data []byte
	// Ne is the number of response bytes expected, 0..MaxResponseData;
	// 0 means the command has no Le field and 256 is encoded as Le=00.
	Ne int
	// Timeout bounds the card's answer to this command (and to its GET
	// RESPONSE and re-sent commands); 0 means the Client's timeout.
	Timeout time.Duration
	// Secret marks Data as secret (a PIN): the encoded command is zeroed
	// once it has been transmitted.
	Secret bool
}

// Bytes encodes the command as a short APDU (case 1 to 4).
func (c Command) Bytes() ([]byte, error) {
	if len(c.Data) > MaxCommandData {
		return nil, fmt.Errorf("encode %s: %d data bytes, short APDUs carry at most %d", c.Name, len(c.Data), MaxCommandData)
	}
	if c.Ne < 0 || c.Ne > MaxResponseData {
		return nil, fmt.Errorf("encode %s: Ne %d out of range 0..%d", c.Name, c.Ne, MaxResponseData)
	}
	b := make([]byte, 0, 4+1+len(c.Data)+1)
	b = append(b, c.CLA, c.INS, c.P1, c.P2)
	if len(c.Data) > 0 {
		b = append(b, byte(len(c.Data)))
		b = append(b, c.Data...)
	}
	if c.Ne > 0 {
		b = append(b, byte(c.Ne)) // 256 encodes as 00
	}
	return b, nil
}

// Response is one response APDU: data, then the status word.
type Response struct {
	// Data is the response data (possibly empty).
	Data []byte
	// SW is the status word, SW1 in the high byte.
	SW uint16
}

// ParseResponse splits a response APDU into data and status word. It fails
// with ErrCardResponse when the answer is shorter than a status word or
// longer than a short response can be. Data aliases b.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: answer of %d bytes has no status word", ErrCardResponse, len(b))
	}
	if len(b) > MaxResponseData+2 {
		return Response{}, fmt.Errorf("%w: answer of %d bytes is longer than a short response (%d)", ErrCardResponse, len(b), MaxResponseData+2)
	}
	n := len(b) - 2
	return Response{Data: b[:n:n], SW: uint16(b[n])<<8 | uint16(b[n+1])}, nil
}

// Client sends commands to a card through a Transmitter and handles the
// ISO 7816-4 transport rules: a 61xx answer is followed by GET RESPONSE
// (00 C0 00 00 xx) until the card has delivered everything, and a 6Cxx answer
// makes the client re-send the command once with Le=xx. A Client is not safe
// for concurrent use (a card session is one conversation).
type Client struct {
	t    Transmitter
	sent int

	// Timeout bounds each command whose Command.Timeout is 0; 0 means no
	// bound other than the caller's context. NewClient sets
	// DefaultCommandTimeout.
	Timeout time.Duration
	// Clock times the card I/O (see IOTime); NewClient sets clock.System{}.
	Clock clock.Clock

	io time.Duration
}

// DefaultCommandTimeout is the per-command timeout of a new Client. A JPKI
// command other than signing is answered in tens of milliseconds; the
// bound only stops a mute card from holding the door.
const DefaultCommandTimeout = 3 * time.Second

// DefaultSignTimeout is the timeout of the signing command: RSA-2048 on the
// card takes up to a few seconds.
const DefaultSignTimeout = 10 * time.Second

// NewClient returns a Client sending through t with DefaultCommandTimeout.
func NewClient(t Transmitter) *Client {
	return &Client{t: t, Timeout: DefaultCommandTimeout, Clock: clock.System{}}
}

// Sent returns the number of command APDUs transmitted so far, including
// GET RESPONSE and re-sent commands.
func (c *Client) Sent() int { return c.sent }

// IOTime returns the time spent waiting for the card (inside
// Transmitter.Transmit) so far.
func (c *Client) IOTime() time.Duration { return c.io }

// transmit sends one encoded command and parses the answer. A command that
// outlives its timeout (while ctx is still live) fails with ErrCardTimeout.
func (c *Client) transmit(ctx context.Context, cmd Command) (Response, error) {
	raw, err := cmd.Bytes()
	if err != nil {
		return Response{}, err
	}
	if cmd.Secret {
		defer clear(raw)
	}
	c.sent++
	timeout := cmd.Timeout
	if timeout == 0 {
		timeout = c.Timeout
	}
	tctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var start time.Time
	if c.Clock != nil {
		start = c.Clock.Now()
	}
	ans, err := c.t.Transmit(tctx, raw)
	if c.Clock != nil {
		c.io += c.Clock.Now().Sub(start)
	}
	if err != nil {
		if ctx.Err() == nil && tctx.Err() != nil {
			return Response{}, fmt.Errorf("%s: %w within %v", cmd.Name, ErrCardTimeout, timeout)
		}
		return Response{}, fmt.Errorf("%s: %w", cmd.Name, err)
	}
	r, err := ParseResponse(ans)
	if err != nil {
		return Response{}, fmt.Errorf("%s: %w", cmd.Name, err)
	}
	return r, nil
}

// Do sends cmd, follows 61xx and 6Cxx, and returns the final response
// whatever its status word. Errors are transport errors from the
// Transmitter (wrapped, naming the command) or ErrCardResponse for an
// unusable answer.
func (c *Client) Do(ctx context.Context, cmd Command) (Response, error) {
	r, err := c.transmit(ctx, cmd)
	if err != nil {
		return Response{}, err
	}
	if r.SW&0xFF00 == 0x6C00 {
		retry := cmd
		retry.Ne = int(r.SW & 0xFF)
		if retry.Ne == 0 {
			retry.Ne = MaxResponseData
		}
		if r, err = c.transmit(ctx, retry); err != nil {
			return Response{}, err
		}
		if r.SW&0xFF00 == 0x6C00 {
			return Response{}, &StatusError{Command: cmd.Name + " (re-sent with Le from 6Cxx)", SW: r.SW}
		}
	}
	if r.SW&0xFF00 != 0x6100 {
		return r, nil
	}
	data := append([]byte(nil), r.Data...)
	for i := 0; r.SW&0xFF00 == 0x6100; i++ {
		if i == maxGetResponse {
			return Response{}, fmt.Errorf("%s: %w: card still answers 61xx after %d GET RESPONSE commands", cmd.Name, ErrCardResponse, maxGetResponse)
		}
		ne := int(r.SW & 0xFF)
		if ne == 0 {
			ne = MaxResponseData
		}
		get := Command{Name: cmd.Name + ": GET RESPONSE", CLA: 0x00, INS: 0xC0, Ne: ne, Timeout: cmd.Timeout}
		if r, err = c.transmit(ctx, get); err != nil {
			return Response{}, err
		}
		data = append(data, r.Data...)
		if len(data) > maxChainedData {
			return Response{}, fmt.Errorf("%s: %w: GET RESPONSE chain longer than %d bytes", cmd.Name, ErrCardResponse, maxChainedData)
		}
	}
	return Response{Data: data, SW: r.SW}, nil
}

// Expect sends cmd like Do and returns the response data when the card
// answers 90 00; any other final status word gives a *StatusError.
func (c *Client) Expect(ctx context.Context, cmd Command) ([]byte, error) {
	r, err := c.Do(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if r.SW != SWOK {
		return nil, &StatusError{Command: cmd.Name, SW: r.SW}
	}
	return r.Data, nil
}
