// Package parser is pgtenant's only gateway to pg_query (libpg_query via cgo).
//
// It guards the C parser before any cgo call (a byte cap, a Go-side screen
// that refuses pathological nesting and operator runs, a semaphore bounding
// concurrent parses, and an RLIMIT_STACK check), then turns a statement into
// a small, stable Summary that the policy package judges: statement kinds,
// query blocks with their relation occurrences and join trees, the WHERE/ON
// conjuncts reduced to the forms the tenancy rules care about, every function,
// operator and type named anywhere, and "unknown node" markers for anything
// the walker does not understand (the policy denies those).
//
// Scan is a pure-Go lexer used for the analysis cache: it abstracts integer and
// plain string literals into the statement's shape (the policy keys its cache
// on the shape plus every literal it did not prove to be a tenant value), and
// it never calls into C. Column references are recorded with the namespace
// PostgreSQL's parse analysis gives them (Block.Scope, ColUse.Scope).
package parser
