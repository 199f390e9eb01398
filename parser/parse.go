package parser

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// MinStack is the smallest RLIMIT_STACK (soft) New accepts: cgo threads get
// their stack size from it, and libpg_query recurses on the C stack.
const MinStack = 8 << 20

// ErrTooLong is wrapped when a statement exceeds the byte cap.
var ErrTooLong = errors.New("statement too long")

// ErrSyntax is wrapped when pg_query cannot parse a statement.
var ErrSyntax = errors.New("syntax error")

// Parser runs guarded pg_query parses.
type Parser struct {
	maxBytes int
	sem      chan struct{}
}

// New returns a Parser allowing statements of at most maxBytes and at most
// concurrency simultaneous C parses. It refuses to run when the stack limit
// is below MinStack.
func New(maxBytes, concurrency int) (*Parser, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("parser: max statement bytes %d must be positive", maxBytes)
	}
	if concurrency <= 0 {
		concurrency = 1
	}
	if err := checkStack(); err != nil {
		return nil, err
	}
	return &Parser{maxBytes: maxBytes, sem: make(chan struct{}, concurrency)}, nil
}

func checkStack() error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &rl); err != nil {
		return fmt.Errorf("parser: reading RLIMIT_STACK: %w", err)
	}
	if rl.Cur != ^uint64(0) && rl.Cur < MinStack {
		return fmt.Errorf("parser: stack limit %d KiB is below the %d KiB pg_query needs (raise `ulimit -s`)", rl.Cur/1024, MinStack/1024)
	}
	return nil
}

// MaxBytes is the byte cap.
func (p *Parser) MaxBytes() int { return p.maxBytes }

// Guard applies the pre-parse guards (length cap, NUL bytes, UTF-8 validity
// and the screen) and returns the scan.
func (p *Parser) Guard(sql string) (*Scanned, error) {
	if len(sql) > p.maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(sql), p.maxBytes)
	}
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, fmt.Errorf("%w: statement contains a NUL byte", ErrSyntax)
	}
	if !utf8.ValidString(sql) {
		return nil, fmt.Errorf("%w: statement is not valid UTF-8", ErrSyntax)
	}
	return Scan(sql)
}

// Parse guards sql, parses it with pg_query and summarises every statement.
// A nil error means every statement was walked; unknown constructs are
// reported in Statement.Unknown, not as errors.
func (p *Parser) Parse(sql string) (*Summary, *Scanned, error) {
	sc, err := p.Guard(sql)
	if err != nil {
		return nil, nil, err
	}
	sum, err := p.parseScanned(sql)
	return sum, sc, err
}

// copiesStd reports whether a COPY statement's text names STDIN or STDOUT
// right after its top-level TO or FROM: only then is it a copy through the
// client connection rather than a server file named by a (possibly empty)
// string.
func (p *Parser) copiesStd(stmt string) bool {
	p.sem <- struct{}{}
	res, err := pg.Scan(stmt)
	<-p.sem
	if err != nil {
		return false
	}
	depth := 0
	toks := res.Tokens
	for i, t := range toks {
		switch t.Token {
		case pg.Token_ASCII_40:
			depth++
		case pg.Token_ASCII_41:
			depth--
		case pg.Token_TO, pg.Token_FROM:
			if depth != 0 {
				continue
			}
			j := i + 1
			if j < len(toks) && toks[j].Token == pg.Token_PROGRAM {
				return false
			}
			return j < len(toks) && (toks[j].Token == pg.Token_STDOUT || toks[j].Token == pg.Token_STDIN)
		}
	}
	return false
}

// ParseScanned parses sql that already passed Guard.
func (p *Parser) ParseScanned(sql string) (*Summary, error) { return p.parseScanned(sql) }

func (p *Parser) parseScanned(sql string) (*Summary, error) {
	p.sem <- struct{}{}
	tree, err := pg.Parse(sql)
	<-p.sem
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	sum := &Summary{}
	for _, raw := range tree.Stmts {
		start := int(raw.StmtLocation)
		end := len(sql)
		if raw.StmtLen > 0 {
			end = start + int(raw.StmtLen)
		}
		st := summarize(raw.Stmt)
		st.Start, st.End = start, end
		if c := st.Copy; c != nil && !c.File && !c.Program && (start < 0 || end > len(sql) || !p.copiesStd(sql[start:end])) {
			// pg_query gives TO '' and TO STDOUT the same empty file name
			c.File = true
		}
		sum.Statements = append(sum.Statements, st)
	}
	return sum, nil
}
