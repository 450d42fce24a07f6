package health

// NewSSL prepares keepalived's SSL_GET: an HTTP check over TLS (see HTTP for what is and
// is not verified).
func NewSSL(c HTTP) (*HTTP, error) {
	c.TLS = true
	return NewHTTP(c)
}
