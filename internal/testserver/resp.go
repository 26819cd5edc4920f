package testserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// A minimal RESP2 client for the admin commands this package needs (PING,
// INFO, CLUSTER ..., SENTINEL ..., MIGRATE). It keeps non-test code on the
// standard library. Replies decode to string (simple and bulk strings),
// int64, nil, []any, or respError (an error reply; inside arrays it is an
// element, at top level it is returned as the error).

// respError is an error reply from the server.
type respError string

func (e respError) Error() string { return string(e) }

type respConn struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

const respTimeout = 2 * time.Second

// dialRedis connects and, given a password, authenticates.
func dialRedis(addr, password string) (*respConn, error) {
	conn, err := net.DialTimeout("tcp", addr, respTimeout)
	if err != nil {
		return nil, err
	}
	c := &respConn{conn: conn, r: bufio.NewReader(conn), timeout: respTimeout}
	if password != "" {
		if _, err := c.do("AUTH", password); err != nil {
			conn.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return c, nil
}

func (c *respConn) close() { c.conn.Close() }

func (c *respConn) do(args ...string) (any, error) {
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return nil, err
	}
	var b []byte
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	if _, err := c.conn.Write(b); err != nil {
		return nil, err
	}
	v, err := c.read()
	if err != nil {
		return nil, err
	}
	if e, ok := v.(respError); ok {
		return nil, e
	}
	return v, nil
}

func (c *respConn) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return nil, errors.New("resp: empty line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return respError(line[1:]), nil
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("resp: bad bulk length %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("resp: bad array length %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("resp: unexpected reply %q", line)
	}
}

// redisDo runs one command on a fresh connection.
func redisDo(addr, password string, args ...string) (any, error) {
	c, err := dialRedis(addr, password)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.do(args...)
}

// redisString runs one command whose reply is a string.
func redisString(addr, password string, args ...string) (string, error) {
	v, err := redisDo(addr, password, args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: unexpected reply %#v", args[0], v)
	}
	return s, nil
}

// redisInfo runs INFO (or CLUSTER INFO, ...) and parses its key:value lines.
func redisInfo(addr, password string, args ...string) (map[string]string, error) {
	s, err := redisString(addr, password, args...)
	if err != nil {
		return nil, err
	}
	return parseInfo(s), nil
}

func parseInfo(s string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// redisMaps decodes an array of flat field/value arrays (the RESP2 form of
// SENTINEL REPLICAS, SENTINEL SENTINELS, ...).
func redisMaps(v any) ([]map[string]string, error) {
	arr, ok := v.([]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("unexpected reply %#v", v)
	}
	out := make([]map[string]string, 0, len(arr))
	for _, e := range arr {
		kv, ok := e.([]any)
		if !ok {
			return nil, fmt.Errorf("unexpected element %#v", e)
		}
		m := make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			k, _ := kv[i].(string)
			val, _ := kv[i+1].(string)
			m[k] = val
		}
		out = append(out, m)
	}
	return out, nil
}

// probeRedis checks that addr is served, ready (not loading), by process pid.
func probeRedis(password string) func(addr string, pid int) error {
	return func(addr string, pid int) error {
		c, err := dialRedis(addr, password)
		if err != nil {
			return err
		}
		defer c.close()
		if v, err := c.do("PING"); err != nil {
			return fmt.Errorf("PING: %w", err)
		} else if v != "PONG" {
			return fmt.Errorf("PING: unexpected reply %#v", v)
		}
		v, err := c.do("INFO", "server", "persistence")
		if err != nil {
			return fmt.Errorf("INFO: %w", err)
		}
		s, _ := v.(string)
		info := parseInfo(s)
		if got := info["process_id"]; got != strconv.Itoa(pid) {
			return fmt.Errorf("%s is served by pid %s, not by ours (%d)", addr, got, pid)
		}
		if info["loading"] == "1" || info["async_loading"] == "1" {
			return errors.New("still loading its data")
		}
		return nil
	}
}
