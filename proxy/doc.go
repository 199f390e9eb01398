// Package proxy is pgtenant's PostgreSQL wire-protocol relay: it accepts
// client connections, authenticates them by JWT, connects each to its
// tenant's region with the tenant context set (per session, or per
// transaction on a shared backend in pool.mode: transaction), and relays
// messages while a StatementChecker decides every statement and an Auditor
// records it.
//
// The proxy knows the checker and the audit only through those interfaces
// and the value types of package tenancy (Decision, Change, Event); it
// imports neither policy (cgo, through parser) nor audit (pgxpool), so it
// builds and is tested with CGO_ENABLED=0 (deps_test.go keeps it so), and
// cmd/pgtenant injects the real ones.
//
// Connection startup:
//
//	client                       pgtenant                        region backend
//	  | SSLRequest / GSSENCRequest |                                   |
//	  |<-------- 'S' (TLS) or 'N' -|                                   |
//	  | StartupMessage ----------->| token from jwt / options -c jwt=  |
//	  |<- NegotiateProtocolVersion | (only if 3.2 or _pq_ options)     |
//	  |<- AuthCleartextPassword ---| (only if no token yet)            |
//	  | PasswordMessage(token) --->| verify JWT, pick data_region      |
//	  |                            | pgconn: service role, SCRAM/md5 ->|
//	  |                            | set_config(tenant, $1), hijack -->|
//	  |<- AuthenticationOk, ParameterStatus*, BackendKeyData (ours), ReadyForQuery
//
// Steady state (pool.mode: session) runs two loops per session on one
// fresh goroutine (the startup's goroutine ends), and no goroutine or
// channel hop per message:
//
//	client loop:  client --Q/P/B--> decide + audit --bytes--> backend
//	                     other messages ------------bytes---> backend
//	                     each forwarded message pushes a pending entry
//	backend loop: backend --bytes--> client; replies that end a statement
//	                     (CommandComplete, ErrorResponse, ReadyForQuery, ...)
//	                     pop the pending entry they answer
//
// Once the client has no more input buffered, the client goroutine writes
// the batch and, when the batch ends with a Sync or Query, runs the backend
// loop itself until the replies are in and nothing is buffered
// (relaySession); then nobody reads the backend socket until the next
// batch. A backend goroutine runs the backend loop instead when the server
// answers only after more client input (COPY FROM STDIN, messages without
// Sync, a batch larger than a buffer, a checker waiting for replies), on a
// TLS backend, and when the backend sends something unasked between
// batches: one epoll watcher per process (park.go) holds the backend
// sockets nobody reads (armed by a sweep every 250 ms, at once after each
// batch of a session that ran LISTEN) and starts a backend goroutine when
// one becomes readable. An idle backend goroutine parks again after an idle
// sweep, so an idle session has the client goroutine only.
//
// Buffered writers are flushed when the reader on the other side has no
// buffered input left, so a pipelined batch travels as one write. On TCP and
// Unix sockets both loops read and send with raw non-blocking system calls
// (no entersyscall, so no sysmon wake-up after each idle moment) and park on
// the runtime's poller only when a socket has nothing to read or no room;
// relay buffers are borrowed from a pool while bytes are in flight. A
// batch relayed inline is sent by the relay's first read of the backend,
// from inside it (connReader.sendFirst): the poller is armed for the reply
// before the batch leaves, so that read parks at once instead of first
// trying a socket the server cannot have answered on yet: one read(2)
// that returns EAGAIN fewer per statement. The client side saves the same
// read another way, since a client may send its next message at any time:
// the client loop runs inside one raw read of the client socket while
// every message fits the read buffer (connReader.serve), so the poller,
// armed once, notes every arrival, and after a batch the goroutine parks
// without trying the socket. Each wake-up reads until a read takes all
// the socket holds; on TCP, TCP_INQ tells that (a pending end of stream
// included) without the read that would return EAGAIN. Closing the client
// socket waits for that raw read to return, so a session closed meanwhile
// closes it once it has (session.close).
//
// Denials keep PostgreSQL's exact error semantics without the proxy writing
// to the client out of order: a denied Query is replaced by a query that
// fails on the server (a syntax error), a denied Parse or Bind by a Bind that
// fails whatever the session holds (a reserved statement name, and format
// codes that do not match its parameters). The server raises an error at exactly
// that point of the stream, which fails an open transaction and makes the
// server skip the rest of an extended batch up to Sync; the backend loop
// recognises the pending denial and sends the denial's ErrorResponse in place
// of the server's error. The client loop also drops the client's messages up
// to Sync, so nothing after a denied message reaches the server. After any
// error in an extended-protocol message the server skips everything up to
// Sync, simple Queries included, so the backend loop then takes only a Sync
// as the message the next ReadyForQuery answers.
//
// The backend loop matches every reply to the message at the head of the
// pending queue; a reply that answers none of the messages in flight (a
// ParseComplete with no Parse pending, a ReadyForQuery with nothing to end)
// means pgtenant's model of the server is wrong, and it ends the session
// (lostTrack) rather than relay on with every later reply off by one. The
// client loop keeps the model exact by refusing what the server would
// answer unexpectedly (a Sync or Flush with a body) and by following COPY
// FROM STDIN from the server's side (copyin.go): after a Query that may
// start a COPY, and after each CopyDone or CopyFail, it reads nothing more
// until the server has said whether it reads COPY data, since in COPY the
// server ignores Sync and Flush and fails on anything else.
//
// The checker mirrors the server's prepared statements and changes the
// mirror only on the server's confirmation: each checked message comes back
// with the changes it would make, its pending entry carries them, and the
// backend loop resolves each from the reply that confirms or refuses it
// (statements.go). A check that depends on changes not resolved yet waits
// for the server's replies, and only for replies the server owes without
// more client input (a Sync or a Query with no extended message before it
// in flight): should the checker ever wait for a reply the server does not
// owe, the statement is denied rather than the session hang holding its
// backend. The backend loop also keeps the portals the server confirmed,
// so an Execute is audited with the statement its portal runs.
//
// CancelRequest: each client gets a BackendKeyData of pgtenant's own; the
// registry maps it to the client's session, and the session to the real key
// and address of the backend it runs on now, so a cancel reaches exactly
// the right backend in the right region.
//
// A session is split by owner: the client side (the client connection, the
// statement checker and its mirror, the pending queue, the audit) lives as
// long as the client; the backendSide (backend connection, reader, writer)
// is fixed in pool.mode: session and swapped at transaction boundaries in
// pool.mode: transaction (txmode.go, pool.go). There a session runs one
// goroutine: the client loop also runs the backend loop (relayInline) once
// it has written a batch the server answers without more client input, and
// returns to the client when the replies are in; a backend goroutine takes
// over only when the server waits for client data (COPY FROM STDIN, a
// batch larger than a buffer, messages without Sync):
//
//	client                  client loop                   pool            backend loop
//	  | Q / first P of batch ->| wait for the replies in    |                     |
//	  |                        | flight: status 'T'/'E'? go on on the same backend
//	  |                        | status 'I': checkout ----->| idle, new (< size), |
//	  |                        |   (wait <= pool.max_wait,  | or wait; 53300      |
//	  |                        |    else 53300 ERROR)       |                     |
//	  |                        | B+E pgtenant_ctx<k> (tenant, subject, startup  |
//	  |                        |   settings: set_config(n, v, true)) + client's |
//	  |                        |   messages, in one write ---------------------> backend
//	  |                        |                            |  replies of B+E: swallowed
//	  |<------------------------------------------------------------- relayed replies
//	  |                        |                            |  ReadyForQuery 'I', nothing
//	  |                        |                            |<- in flight: detach, reset if
//	  |                        |                            |   dirty, wait for cancels in
//	  |                        |                            |   flight, checkin (or hand to
//	  |                        |                            |   the longest waiter)
//
// In transaction mode a client's named statements are prepared on each
// backend under pgtenant_s_<hash of text and types> (LRU per backend) and
// re-prepared by an injected Parse where the backend lacks them; the
// checker sees only the client's names and messages.
package proxy
