// Command portserver is the server the port e2e tests run inside the
// namespaces. Every TCP connection gets "peer=ADDR\n", then its bytes
// echoed until it half-closes, then "bye". An HTTP request gets
// "peer=ADDR\n". A UDP datagram gets "peer=ADDR PAYLOAD". Each peer is also
// logged on stdout, as a server's access log would.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	tcp := flag.String("tcp", "", "comma-separated TCP addresses (greet and echo)")
	udp := flag.String("udp", "", "comma-separated UDP addresses")
	web := flag.String("http", "", "comma-separated HTTP addresses")
	flag.Parse()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "portserver:", err)
		os.Exit(1)
	}
	for _, a := range split(*tcp) {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			fail(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					// Out of descriptors (the flood test): wait, keep serving.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				fmt.Printf("tcp peer=%s\n", c.RemoteAddr())
				go func() {
					defer c.Close()
					fmt.Fprintf(c, "peer=%s\n", c.RemoteAddr())
					io.Copy(c, c)
					c.Write([]byte("bye"))
				}()
			}
		}()
	}
	for _, a := range split(*udp) {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			fail(err)
		}
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				fmt.Printf("udp peer=%s\n", from)
				pc.WriteTo([]byte(fmt.Sprintf("peer=%s %s", from, buf[:n])), from)
			}
		}()
	}
	for _, a := range split(*web) {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			fail(err)
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Printf("http peer=%s\n", r.RemoteAddr)
			fmt.Fprintf(w, "peer=%s\n", r.RemoteAddr)
		}))
	}
	fmt.Println("ready")
	select {}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
