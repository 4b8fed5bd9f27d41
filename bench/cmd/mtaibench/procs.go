package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a subprocess the benchmark started and must stop.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string // file with its stdout and stderr
	done chan struct{}
	err  error // set before done is closed
}

// spawner starts children from one OS thread that lives as long as it:
// the kernel sends a child its Pdeathsig when the thread that forked it
// ends, not the process (go.dev/issue/27505), and the Go runtime may end
// an idle thread.
type spawner struct {
	reqs chan func()
	done chan struct{}
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan func()), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		defer close(s.done)
		for f := range s.reqs {
			f()
		}
	}()
	return s
}

// start runs cmd.Start on the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s.reqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// close ends the spawner's thread; children still running get SIGKILL.
func (s *spawner) close() {
	close(s.reqs)
	<-s.done
}

// startChild starts bin with args and env, pinned to cpus when not empty
// (through taskset, so that every thread of the child inherits the mask).
// Its output goes to a log file in dir; stdout lines are also passed to
// first, when not nil, until it returns true.
func (s *spawner) startChild(name, dir, bin string, args, env []string, cpus string, first func(line string) bool) (*child, error) {
	argv := append([]string{bin}, args...)
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	// The child dies with the benchmark even if the benchmark is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	var stdout io.ReadCloser
	if first != nil {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			_ = logf.Close()
			return nil, err
		}
	} else {
		cmd.Stdout = logf
	}
	if err := s.start(cmd); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	found := make(chan struct{})
	if stdout != nil {
		go func() {
			sc := bufio.NewScanner(stdout)
			matched := false
			for sc.Scan() {
				fmt.Fprintln(logf, sc.Text())
				if !matched && first(sc.Text()) {
					matched = true
					close(found)
				}
			}
			if !matched {
				close(found)
			}
		}()
	} else {
		close(found)
	}
	go func() {
		<-found // the reader must be done with the pipe's first lines before Wait
		c.err = cmd.Wait()
		_ = logf.Close()
		close(c.done)
	}()
	select {
	case <-found:
	case <-time.After(60 * time.Second):
		c.stop(time.Second)
		return nil, fmt.Errorf("%s printed nothing useful within 60s (log: %s)", name, logPath)
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills the child.
func (c *child) stop(grace time.Duration) {
	if c == nil || c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// tail returns the last lines of the child's log, for an error message.
func (c *child) tail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// goBuild builds pkg (a path relative to the module root) into out.
func goBuild(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot walks up from the working directory to the mtai module's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/mtai-dev/mtai\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run mtaibench inside the mtai repository (no go.mod of github.com/mtai-dev/mtai above the working directory)")
		}
		dir = parent
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitPing polls url until it answers 200 "pong", the child exits, or timeout.
func waitPing(ctx context.Context, url string, c *child, timeout time.Duration) error {
	client := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "pong" {
				return nil
			}
		}
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready: %v\n%s", c.name, c.err, c.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s within %v\n%s", c.name, url, timeout, c.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// raiseFileLimit sets RLIMIT_NOFILE to want (soft and hard) when allowed,
// else the soft limit to the hard one. Children inherit it. It returns the
// soft limit in force.
func raiseFileLimit(want uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur >= want {
		return lim.Cur
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}); err == nil {
		return want
	}
	lim.Cur = lim.Max // not privileged: as far as the hard limit allows
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// pinSelf restricts every thread of this process to cpus (a taskset list).
func pinSelf(cpus string) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset: %v: %s", err, out)
	}
	return nil
}

// cpuSample is a process's CPU time at one moment.
type cpuSample struct {
	ticks int64 // utime+stime from /proc/PID/stat, in clock ticks
	sys   int64 // stime alone (time in the kernel: syscalls, network stack)
	nanos int64 // sum of /proc/PID/task/*/schedstat run times, in ns (live threads only)
}

func readCPU(pid int) (cpuSample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuSample{}, err
	}
	utime, stime, err := parseStatTicks(b)
	if err != nil {
		return cpuSample{}, err
	}
	s := cpuSample{ticks: utime + stime, sys: stime}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		if b, err := os.ReadFile(t); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				s.nanos += n
			}
		}
	}
	return s, nil
}

// parseStatTicks returns utime and stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatTicks(stat []byte) (utime, stime int64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat: no ')'")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("malformed /proc stat: %d fields after the name", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return utime, stime, nil
}

// readRSS returns VmRSS of pid in KiB.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest))
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS line in /proc status")
}

// clockTicks is CLK_TCK from getconf, or 100.
func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}
