package main

import (
	"net/http"
	"strings"
	"sync"
)

// exchange is what the checks need to know about one request minio-go sent:
// the client decides framing, signing and concurrency, and a check that only
// looked at API results could pass while the client took another path.
type exchange struct {
	Method        string
	Path          string
	Query         string
	ContentSHA256 string
	DecodedLength string
	ContentLength int64
	Header        http.Header
	Status        int
}

func (x exchange) isPartUpload() bool {
	return x.Method == http.MethodPut && strings.Contains(x.Query, "partNumber=")
}

// scope is the region in the SigV4 credential scope of the request.
func (x exchange) scope() string {
	auth := x.Header.Get("Authorization")
	i := strings.Index(auth, "Credential=")
	if i < 0 {
		return ""
	}
	parts := strings.Split(strings.SplitN(auth[i+len("Credential="):], ",", 2)[0], "/")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

type recorder struct {
	next http.RoundTripper

	mu        sync.Mutex
	log       []exchange
	inFlight  int
	maxFlight int
}

func newRecorder(next http.RoundTripper) *recorder {
	return &recorder{next: next}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	x := exchange{
		Method:        req.Method,
		Path:          req.URL.EscapedPath(),
		Query:         req.URL.RawQuery,
		ContentSHA256: req.Header.Get("X-Amz-Content-Sha256"),
		DecodedLength: req.Header.Get("X-Amz-Decoded-Content-Length"),
		ContentLength: req.ContentLength,
		Header:        req.Header.Clone(),
	}
	part := x.isPartUpload()
	if part {
		r.mu.Lock()
		r.inFlight++
		if r.inFlight > r.maxFlight {
			r.maxFlight = r.inFlight
		}
		r.mu.Unlock()
	}
	resp, err := r.next.RoundTrip(req)
	if resp != nil {
		x.Status = resp.StatusCode
	}
	r.mu.Lock()
	if part {
		r.inFlight--
	}
	r.log = append(r.log, x)
	r.mu.Unlock()
	return resp, err
}

// mark starts a window of observation: since(mark) returns what was sent after it.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxFlight = 0
	return len(r.log)
}

func (r *recorder) since(mark int) []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange(nil), r.log[mark:]...)
}

// maxPartsInFlight is the most part uploads that were outstanding at once since the last mark.
func (r *recorder) maxPartsInFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxFlight
}

func filter(xs []exchange, keep func(exchange) bool) []exchange {
	var out []exchange
	for _, x := range xs {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}
