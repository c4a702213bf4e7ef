//go:build !linux

package network

import (
	"fmt"

	"github.com/berth/berth/internal/errdefs"
)

var errLinuxOnly = fmt.Errorf("container networking needs Linux: %w", errdefs.ErrNotImplemented)

// Manager is Linux-only; elsewhere New fails and the type exists so callers build.
type Manager struct{}

// New fails with errdefs.ErrNotImplemented outside Linux.
func New(Config) (*Manager, error) { return nil, errLinuxOnly }

func (*Manager) CreateNetNS(string) (string, error) { return "", errLinuxOnly }
func (*Manager) DeleteNetNS(string) error           { return errLinuxOnly }
func (*Manager) NetNSPath(string) string            { return "" }
func (*Manager) Create(string, string, string, bool, map[string]string) (Network, error) {
	return Network{}, errLinuxOnly
}
func (*Manager) Get(string) (Network, error) { return Network{}, errLinuxOnly }
func (*Manager) List() []Network             { return nil }
func (*Manager) Remove(string) error         { return errLinuxOnly }
func (*Manager) Prune() ([]string, error)    { return nil, errLinuxOnly }
func (*Manager) Connect(string, string, string, EndpointOpts) (Endpoint, error) {
	return Endpoint{}, errLinuxOnly
}
func (*Manager) Disconnect(string, string) error { return errLinuxOnly }
func (*Manager) DisconnectAll(string) error      { return errLinuxOnly }
func (*Manager) Endpoints(string) []Endpoint     { return nil }
func (*Manager) PublishPorts(string, []PortMapping) ([]PortMapping, error) {
	return nil, errLinuxOnly
}
func (*Manager) UnpublishPorts(string) error     { return errLinuxOnly }
func (*Manager) Ports(string) []PortMapping      { return nil }
func (*Manager) Recover(func(string) bool) error { return errLinuxOnly }
func (*Manager) Close(bool) error                { return nil }
func (*Manager) Table() string                   { return "" }
