package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup packet codes (PostgreSQL protocol, "Message Formats").
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocolMajor3    = 3
	maxStartupLen     = 10000     // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
	maxPasswordLen    = 256 << 10 // far above any token; the verifier rejects tokens over 16 KiB with 28000
)

// errCancelHandled ends a connection that carried a CancelRequest.
var errCancelHandled = errors.New("cancel request handled")

// clientStart is the outcome of the pre-authentication exchange.
type clientStart struct {
	conn     net.Conn // TLS-wrapped when negotiated
	tls      bool
	req      *startupRequest
	minor    uint16 // protocol minor version the client asked for
	unrecOpt []string
}

// readStartup reads the client's first packets: SSLRequest (TLS if
// configured, 'N' otherwise), GSSENCRequest ('N'), CancelRequest (served and
// the connection closed) and finally the StartupMessage. It reads exactly the
// bytes of each packet, so nothing of a following TLS handshake is consumed.
func (s *Server) readStartup(conn net.Conn) (*clientStart, error) {
	st := &clientStart{conn: conn}
	for range 3 {
		body, err := readStartupPacket(st.conn)
		if err != nil {
			return nil, err
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == sslRequestCode:
			if st.tls || len(body) != 4 {
				return nil, fmt.Errorf("%w: unexpected SSLRequest", errProtocol)
			}
			if err := s.startTLS(st); err != nil {
				return nil, err
			}
		case code == gssEncRequestCode:
			if _, err := st.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case code == cancelRequestCode:
			s.handleCancel(body)
			return nil, errCancelHandled
		case code>>16 == protocolMajor3:
			st.minor = uint16(code)
			params, err := startupParams(body[4:])
			if err != nil {
				return nil, err
			}
			req, err := s.rules().parseStartup(params)
			if err != nil {
				return nil, err
			}
			st.req = req
			return st, nil
		default:
			return nil, newClientError(pgerrcode.FeatureNotSupported, "unsupported_protocol",
				"unsupported frontend protocol %d.%d: pgtenant speaks 3.0", code>>16, code&0xffff)
		}
	}
	return nil, fmt.Errorf("%w: too many startup negotiation packets", errProtocol)
}

// readStartupPacket reads one length-prefixed startup packet body.
func readStartupPacket(conn net.Conn) ([]byte, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(lenBuf[:]))) - 4
	if n < 4 || n > maxStartupLen {
		return nil, fmt.Errorf("%w: invalid startup packet length %d", errProtocol, n+4)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, unexpectedEOF(err)
	}
	return body, nil
}

// startupParams decodes the name/value pairs of a StartupMessage.
func startupParams(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for {
		name, rest, ok := cstring(b)
		if !ok {
			return nil, fmt.Errorf("%w: unterminated startup parameter", errProtocol)
		}
		if name == "" {
			return params, nil
		}
		value, rest, ok := cstring(rest)
		if !ok {
			return nil, fmt.Errorf("%w: startup parameter %q has no value", errProtocol, truncate(name, 40))
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("%w: duplicate startup parameter %q", errProtocol, truncate(name, 40))
		}
		params[name] = value
		b = rest
	}
}

// startTLS answers an SSLRequest and, when TLS is configured, upgrades the connection.
func (s *Server) startTLS(st *clientStart) error {
	cfg := s.tlsConfig()
	if cfg == nil {
		_, err := st.conn.Write([]byte{'N'})
		return err
	}
	if _, err := st.conn.Write([]byte{'S'}); err != nil {
		return err
	}
	tc := tls.Server(st.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	st.conn, st.tls = tc, true
	return nil
}

// negotiate tells a client that asked for a newer minor version or for
// protocol options that pgtenant speaks 3.0 without them.
func negotiate(w *connWriter, st *clientStart) error {
	if st.minor == 0 && len(st.req.Unknown) == 0 {
		return nil
	}
	return encode(w, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: st.req.Unknown})
}

// readPassword asks for a cleartext password and returns it: with no token in
// the startup packet, the password is the token.
func readPassword(r *msgReader, w *connWriter) (string, error) {
	if err := encode(w, &pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	t, n, err := r.header()
	if err != nil {
		return "", err
	}
	if t != 'p' {
		return "", fmt.Errorf("%w: expected a password message, got %q", errProtocol, t)
	}
	body, err := r.readBody(n)
	if err != nil {
		return "", err
	}
	pw, _, ok := cstring(body)
	if !ok {
		return "", fmt.Errorf("%w: unterminated password", errProtocol)
	}
	return pw, nil
}
