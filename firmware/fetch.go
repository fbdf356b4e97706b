package firmware

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// ChunkFetcher reads a release binary piece by piece, so that a broken
// transfer resumes where it stopped. The MQTT link will provide one; this
// package provides FileFetcher and HTTPFetcher.
type ChunkFetcher interface {
	// Fetch returns up to n bytes of the binary starting at offset. When the
	// transfer breaks it may return fewer bytes together with an error;
	// the bytes returned are valid and are kept. At or past the end it
	// returns io.EOF.
	Fetch(ctx context.Context, offset int64, n int) ([]byte, error)
}

// FileFetcher fetches from a local file (an admin's USB stick, tests).
type FileFetcher struct {
	// Path is the file to read.
	Path string
}

// Fetch reads up to n bytes at offset from the file.
func (f FileFetcher) Fetch(ctx context.Context, offset int64, n int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("open release file: %w", err)
	}
	defer file.Close()
	buf := make([]byte, n)
	got, err := file.ReadAt(buf, offset)
	if errors.Is(err, io.EOF) && got > 0 {
		err = nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("read release file %s at offset %d: %w", f.Path, offset, err)
	}
	return buf[:got], err
}

// HTTPFetcher fetches over HTTP(S) with Range requests, so that each chunk
// (and a chunk cut short by a dropped connection) resumes at its offset.
type HTTPFetcher struct {
	// URL is the binary's address (https in production; the manifest
	// refuses anything else).
	URL string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
}

// Fetch asks for bytes offset..offset+n-1 and returns what arrived.
func (h HTTPFetcher) Fetch(ctx context.Context, offset int64, n int) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", h.URL, err)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+int64(n)-1))
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s at offset %d: %w", h.URL, offset, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != offset {
			return nil, fmt.Errorf("fetch %s at offset %d: Content-Range %q does not start there", h.URL, offset, resp.Header.Get("Content-Range"))
		}
	case http.StatusOK:
		if offset != 0 {
			return nil, fmt.Errorf("fetch %s at offset %d: server ignores Range requests (status 200)", h.URL, offset)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		return nil, io.EOF
	default:
		return nil, fmt.Errorf("fetch %s at offset %d: status %s", h.URL, offset, resp.Status)
	}
	buf := make([]byte, n)
	got, err := io.ReadFull(resp.Body, buf)
	switch {
	case err == nil, errors.Is(err, io.ErrUnexpectedEOF) && resp.ContentLength == int64(got):
		return buf[:got], nil
	case errors.Is(err, io.EOF):
		return nil, io.EOF
	default:
		return buf[:got], fmt.Errorf("fetch %s at offset %d: body cut after %d bytes: %w", h.URL, offset, got, err)
	}
}

// contentRangeStart parses the first byte position of "bytes a-b/len".
func contentRangeStart(s string) (int64, error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, fmt.Errorf("%w: Content-Range %q", ErrMalformed, s)
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("%w: Content-Range %q", ErrMalformed, s)
	}
	return strconv.ParseInt(first, 10, 64)
}
