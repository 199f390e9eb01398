// Command fsprobe times a durable 300-byte append, as the spool's group
// mode makes one per group, in the ways a file can be written durably:
// into a fallocated file mapped shared and fdatasync'd (the spool), the
// same file zero-filled first, pwrite and fdatasync, an O_DSYNC pwrite, and
// an O_DIRECT|O_DSYNC rewrite of the 4 KiB block. It prints the latency
// and the process's CPU per durable append. Not part of pgtenant; see
// ../2026-12-06-s11-README.md. Usage: go run . DIR (a directory on the
// file system to measure).
package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

const (
	appends = 2000
	recSize = 300
	segSize = 8 << 20
)

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// segment creates a fallocated segment in dir, zero-filled when zero.
func segment(dir string, zero bool, flag int) *os.File {
	f, err := os.CreateTemp(dir, "fsprobe-")
	check(err)
	check(syscall.Fallocate(int(f.Fd()), 0, 0, segSize))
	if zero {
		_, err := f.WriteAt(make([]byte, segSize), 0)
		check(err)
		check(syscall.Fdatasync(int(f.Fd())))
	}
	if flag == 0 {
		return f
	}
	name := f.Name()
	f.Close()
	g, err := os.OpenFile(name, os.O_RDWR|flag, 0)
	check(err)
	return g
}

func run(name string, f *os.File, appendOne func(i int)) {
	c0, t0 := cpu(), time.Now()
	for i := range appends {
		appendOne(i)
	}
	wall, used := time.Since(t0), cpu()-c0
	fmt.Printf("%-24s %.3f ms, %5.1f µs of CPU per durable append\n", name,
		float64(wall.Microseconds())/appends/1000, float64(used.Microseconds())/appends)
	os.Remove(f.Name())
	f.Close()
}

func mapped(dir string, zero bool) {
	f := segment(dir, zero, 0)
	m, err := syscall.Mmap(int(f.Fd()), 0, segSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	check(err)
	rec := make([]byte, recSize)
	name := "mmap + fdatasync"
	if zero {
		name = "zero-filled, mmap + fdatasync"
	}
	run(name, f, func(i int) {
		rec[0] = byte(i)
		copy(m[i*recSize:], rec)
		check(syscall.Fdatasync(int(f.Fd())))
	})
	check(syscall.Munmap(m))
}

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	rec := make([]byte, recSize)
	for range 2 {
		mapped(dir, false)
		mapped(dir, true)
		f := segment(dir, false, 0)
		run("pwrite + fdatasync", f, func(i int) {
			rec[0] = byte(i)
			_, err := f.WriteAt(rec, int64(i*recSize))
			check(err)
			check(syscall.Fdatasync(int(f.Fd())))
		})
		f = segment(dir, false, syscall.O_DSYNC)
		run("O_DSYNC pwrite", f, func(i int) {
			rec[0] = byte(i)
			_, err := f.WriteAt(rec, int64(i*recSize))
			check(err)
		})
		f = segment(dir, false, syscall.O_DSYNC|syscall.O_DIRECT)
		block, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		check(err)
		run("O_DIRECT|O_DSYNC block", f, func(i int) {
			block[i*recSize%4096] = byte(i)
			_, err := f.WriteAt(block, int64(i*recSize/4096*4096))
			check(err)
		})
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsprobe:", err)
		os.Exit(1)
	}
}
