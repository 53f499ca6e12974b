// vcsim for esxcap's tests: govmomi's vCenter simulator (its simulator package, from Debian's
// golang-github-vmware-govmomi-dev) serving one datacenter on 127.0.0.1; prints its URL, runs until
// SIGINT/SIGTERM. Built by `make vcsim` (GOPATH mode, offline).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	hosts := flag.Int("standalone-host", 0, "standalone hosts")
	clusters := flag.Int("cluster", 1, "clusters")
	clusterHosts := flag.Int("host", 2, "hosts per cluster")
	vms := flag.Int("vm", 2, "VMs per resource pool")
	flag.Parse()
	model := simulator.VPX()
	model.Host = *hosts
	model.Cluster = *clusters
	model.ClusterHost = *clusterHosts
	model.Machine = *vms
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0"}
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	fmt.Println(server.URL.String())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	server.Close()
	model.Remove()
}
