package reader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestCommandBytes(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Command
		want    []byte
		wantErr bool
	}{
		{"case 1", Command{CLA: 0x00, INS: 0x20, P1: 0x00, P2: 0x80}, []byte{0x00, 0x20, 0x00, 0x80}, false},
		{"case 2 Ne 32", Command{INS: 0xB0, Ne: 32}, []byte{0x00, 0xB0, 0x00, 0x00, 0x20}, false},
		{"case 2 Ne 256 is Le 00", Command{INS: 0xB0, P1: 0x01, Ne: 256}, []byte{0x00, 0xB0, 0x01, 0x00, 0x00}, false},
		{"case 3", Command{INS: 0xA4, P1: 0x02, P2: 0x0C, Data: []byte{0x00, 0x0A}}, []byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0A}, false},
		{"case 4", Command{CLA: 0x80, INS: 0x2A, P2: 0x80, Data: []byte{1, 2}, Ne: 256}, []byte{0x80, 0x2A, 0x00, 0x80, 0x02, 1, 2, 0x00}, false},
		{"data too long", Command{Data: make([]byte, 256)}, nil, true},
		{"Ne too big", Command{Ne: 257}, nil, true},
		{"Ne negative", Command{Ne: -1}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cmd.Bytes()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Bytes() error = %v, want error %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Bytes() = % X, want % X", got, tt.want)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		wantData []byte
		wantSW   uint16
		wantErr  error
	}{
		{"status only", []byte{0x90, 0x00}, []byte{}, 0x9000, nil},
		{"data and status", []byte{1, 2, 3, 0x62, 0x82}, []byte{1, 2, 3}, 0x6282, nil},
		{"longest short response", append(make([]byte, 256), 0x90, 0x00), make([]byte, 256), 0x9000, nil},
		{"empty", nil, nil, 0, ErrCardResponse},
		{"one byte", []byte{0x90}, nil, 0, ErrCardResponse},
		{"too long", append(make([]byte, 257), 0x90, 0x00), nil, 0, ErrCardResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseResponse(tt.in)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParseResponse() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(r.Data, tt.wantData) || r.SW != tt.wantSW {
				t.Errorf("ParseResponse() = % X %04X, want % X %04X", r.Data, r.SW, tt.wantData, tt.wantSW)
			}
		})
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{0x90, 0x00})
	f.Add([]byte{0x01, 0x61, 0x10})
	f.Add([]byte{0x6C})
	f.Add(append(make([]byte, 257), 0x90, 0x00))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			if !errors.Is(err, ErrCardResponse) {
				t.Fatalf("error %v is not ErrCardResponse", err)
			}
			if len(b) >= 2 && len(b) <= MaxResponseData+2 {
				t.Fatalf("rejected a %d-byte answer: %v", len(b), err)
			}
			return
		}
		if len(r.Data) != len(b)-2 || len(r.Data) > MaxResponseData {
			t.Fatalf("data of %d bytes from %d-byte answer", len(r.Data), len(b))
		}
		if r.SW != uint16(b[len(b)-2])<<8|uint16(b[len(b)-1]) {
			t.Fatalf("SW %04X does not match the last bytes % X", r.SW, b[len(b)-2:])
		}
	})
}

// script is a Transmitter that checks each command against an expected one
// and answers from a list.
type script struct {
	t     *testing.T
	steps []step
	n     int
}

type step struct {
	want   []byte // expected command; nil accepts any
	answer []byte
	err    error
}

func (s *script) Transmit(_ context.Context, cmd []byte) ([]byte, error) {
	s.t.Helper()
	if s.n >= len(s.steps) {
		s.t.Fatalf("unexpected command %d: % X", s.n+1, cmd)
	}
	st := s.steps[s.n]
	s.n++
	if st.want != nil && !bytes.Equal(cmd, st.want) {
		s.t.Fatalf("command %d = % X, want % X", s.n, cmd, st.want)
	}
	return st.answer, st.err
}

func TestClientDo(t *testing.T) {
	readCmd := Command{Name: "READ BINARY", INS: 0xB0, Ne: 256}
	read := []byte{0x00, 0xB0, 0x00, 0x00, 0x00}
	getResp := func(le byte) []byte { return []byte{0x00, 0xC0, 0x00, 0x00, le} }
	many61 := []step{{read, []byte{0x61, 0x01}, nil}}
	for range maxGetResponse {
		many61 = append(many61, step{nil, []byte{0x61, 0x01}, nil})
	}
	errLink := errors.New("link down")

	tests := []struct {
		name     string
		cmd      Command
		steps    []step
		wantData []byte
		wantSW   uint16
		wantErr  error
	}{
		{
			name:     "plain 9000",
			cmd:      readCmd,
			steps:    []step{{read, []byte{1, 2, 0x90, 0x00}, nil}},
			wantData: []byte{1, 2}, wantSW: SWOK,
		},
		{
			name:     "error status returned as is",
			cmd:      readCmd,
			steps:    []step{{read, []byte{0x6A, 0x82}, nil}},
			wantData: []byte{}, wantSW: SWFileNotFound,
		},
		{
			name: "61xx chain concatenated",
			cmd:  readCmd,
			steps: []step{
				{read, []byte{0x61, 0x03}, nil},
				{getResp(3), []byte{1, 2, 3, 0x61, 0x00}, nil},
				{getResp(0), []byte{4, 0x90, 0x00}, nil},
			},
			wantData: []byte{1, 2, 3, 4}, wantSW: SWOK,
		},
		{
			name: "6Cxx re-sent with Le",
			cmd:  readCmd,
			steps: []step{
				{read, []byte{0x6C, 0x02}, nil},
				{[]byte{0x00, 0xB0, 0x00, 0x00, 0x02}, []byte{7, 8, 0x90, 0x00}, nil},
			},
			wantData: []byte{7, 8}, wantSW: SWOK,
		},
		{
			name: "6Cxx then 61xx",
			cmd:  readCmd,
			steps: []step{
				{read, []byte{0x6C, 0x05}, nil},
				{[]byte{0x00, 0xB0, 0x00, 0x00, 0x05}, []byte{0x61, 0x05}, nil},
				{getResp(5), []byte{1, 2, 3, 4, 5, 0x90, 0x00}, nil},
			},
			wantData: []byte{1, 2, 3, 4, 5}, wantSW: SWOK,
		},
		{
			name: "6Cxx twice",
			cmd:  readCmd,
			steps: []step{
				{read, []byte{0x6C, 0x02}, nil},
				{nil, []byte{0x6C, 0x03}, nil},
			},
			wantErr: ErrCardResponse,
		},
		{
			name:    "61xx forever",
			cmd:     readCmd,
			steps:   many61,
			wantErr: ErrCardResponse,
		},
		{
			name:    "garbage answer",
			cmd:     readCmd,
			steps:   []step{{read, []byte{0x90}, nil}},
			wantErr: ErrCardResponse,
		},
		{
			name:    "garbage during GET RESPONSE",
			cmd:     readCmd,
			steps:   []step{{read, []byte{0x61, 0x02}, nil}, {getResp(2), nil, nil}},
			wantErr: ErrCardResponse,
		},
		{
			name:    "card removed",
			cmd:     readCmd,
			steps:   []step{{read, nil, fmt.Errorf("pcsc: %w", ErrCardRemoved)}},
			wantErr: ErrCardRemoved,
		},
		{
			name:    "transport error passed through",
			cmd:     readCmd,
			steps:   []step{{read, nil, errLink}},
			wantErr: errLink,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{t: t, steps: tt.steps}
			c := NewClient(s)
			r, err := c.Do(t.Context(), tt.cmd)
			if c.Sent() != s.n {
				t.Errorf("Sent() = %d, transmitter saw %d", c.Sent(), s.n)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Do() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Do() error = %v", err)
			}
			if s.n != len(tt.steps) {
				t.Errorf("sent %d commands, want %d", s.n, len(tt.steps))
			}
			if !bytes.Equal(r.Data, tt.wantData) || r.SW != tt.wantSW {
				t.Errorf("Do() = % X %04X, want % X %04X", r.Data, r.SW, tt.wantData, tt.wantSW)
			}
		})
	}
}

func TestClientDoUnencodable(t *testing.T) {
	s := &script{t: t}
	c := NewClient(s)
	if _, err := c.Do(t.Context(), Command{Name: "bad", Ne: 300}); err == nil || c.Sent() != 0 || s.n != 0 {
		t.Fatalf("Do() = %v after %d commands, want an encoding error before sending", err, s.n)
	}
}

func TestClientExpect(t *testing.T) {
	cmd := Command{Name: "SELECT EF 000A", INS: 0xA4, P1: 0x02, P2: 0x0C, Data: []byte{0x00, 0x0A}}
	s := &script{t: t, steps: []step{{nil, []byte{0x6A, 0x82}, nil}}}
	_, err := NewClient(s).Expect(t.Context(), cmd)
	var se *StatusError
	if !errors.As(err, &se) || se.SW != SWFileNotFound || se.Command != cmd.Name {
		t.Fatalf("Expect() error = %v, want *StatusError{%q, 6A82}", err, cmd.Name)
	}
	if !errors.Is(err, ErrCardResponse) {
		t.Errorf("StatusError does not match ErrCardResponse")
	}
	for _, sentinel := range []error{ErrCardRemoved, ErrNotMyNumberCard, ErrBadCertificate} {
		if errors.Is(err, sentinel) {
			t.Errorf("StatusError matches %v", sentinel)
		}
	}
	if want := "SELECT EF 000A: card answered status 6A82 (file or application not found)"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
