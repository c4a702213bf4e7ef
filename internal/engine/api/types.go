// Package api holds the wire types of berth's engine API.
//
// The engine API is the Docker Engine API: the berth CLI and stock docker
// clients talk to the same routes and the same JSON shapes, so there is one
// source of truth for every container. Only the fields berth implements are
// declared; unknown fields sent by clients are ignored.
package api

import "time"

// Version is the Docker Engine API version berth advertises.
const Version = "1.45"

// MinVersion is the oldest API version berth accepts.
const MinVersion = "1.24"

// ErrorResponse is the body of every error reply, as Docker sends it. Kind
// is berth's extension carrying the errdefs class to berth clients.
type ErrorResponse struct {
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
}

// Config is a container's portable configuration (Docker's container.Config).
type Config struct {
	Hostname     string              `json:"Hostname"`
	Domainname   string              `json:"Domainname"`
	User         string              `json:"User"`
	AttachStdin  bool                `json:"AttachStdin"`
	AttachStdout bool                `json:"AttachStdout"`
	AttachStderr bool                `json:"AttachStderr"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Tty          bool                `json:"Tty"`
	OpenStdin    bool                `json:"OpenStdin"`
	StdinOnce    bool                `json:"StdinOnce"`
	Env          []string            `json:"Env"`
	Cmd          []string            `json:"Cmd"`
	Image        string              `json:"Image"`
	Volumes      map[string]struct{} `json:"Volumes"`
	WorkingDir   string              `json:"WorkingDir"`
	Entrypoint   []string            `json:"Entrypoint"`
	Labels       map[string]string   `json:"Labels"`
	StopSignal   string              `json:"StopSignal,omitempty"`
	StopTimeout  *int                `json:"StopTimeout,omitempty"`
}

// RestartPolicy is Docker's restart policy.
type RestartPolicy struct {
	Name              string `json:"Name"` // "", "no", "always", "unless-stopped", "on-failure"
	MaximumRetryCount int    `json:"MaximumRetryCount"`
}

// LogConfig selects and configures the container's log writer.
type LogConfig struct {
	Type   string            `json:"Type"`
	Config map[string]string `json:"Config"`
}

// HostConfig is the host-dependent part of a container's configuration.
type HostConfig struct {
	Binds           []string                 `json:"Binds"`
	Mounts          []Mount                  `json:"Mounts,omitempty"`
	PortBindings    map[string][]PortBinding `json:"PortBindings"`
	PublishAllPorts bool                     `json:"PublishAllPorts"`
	DNS             []string                 `json:"Dns"`
	DNSSearch       []string                 `json:"DnsSearch"`
	DNSOptions      []string                 `json:"DnsOptions"`
	ExtraHosts      []string                 `json:"ExtraHosts"`
	NetworkMode     string                   `json:"NetworkMode"`
	IpcMode         string                   `json:"IpcMode"`
	PidMode         string                   `json:"PidMode"`
	UTSMode         string                   `json:"UTSMode"`
	ShmSize         int64                    `json:"ShmSize"`
	GroupAdd        []string                 `json:"GroupAdd"`
	RestartPolicy   RestartPolicy            `json:"RestartPolicy"`
	AutoRemove      bool                     `json:"AutoRemove"`
	CapAdd          []string                 `json:"CapAdd"`
	CapDrop         []string                 `json:"CapDrop"`
	Privileged      bool                     `json:"Privileged"`
	ReadonlyRootfs  bool                     `json:"ReadonlyRootfs"`
	SecurityOpt     []string                 `json:"SecurityOpt"`
	Tmpfs           map[string]string        `json:"Tmpfs,omitempty"`
	Sysctls         map[string]string        `json:"Sysctls,omitempty"`
	Runtime         string                   `json:"Runtime,omitempty"`
	LogConfig       LogConfig                `json:"LogConfig"`
	OomScoreAdj     int                      `json:"OomScoreAdj"`
	Resources
}

// Resources are a container's cgroup limits.
type Resources struct {
	CPUShares         int64  `json:"CpuShares"`
	Memory            int64  `json:"Memory"`
	NanoCPUs          int64  `json:"NanoCpus"`
	CPUPeriod         int64  `json:"CpuPeriod"`
	CPUQuota          int64  `json:"CpuQuota"`
	CpusetCpus        string `json:"CpusetCpus"`
	BlkioWeight       uint16 `json:"BlkioWeight"`
	MemoryReservation int64  `json:"MemoryReservation"`
	MemorySwap        int64  `json:"MemorySwap"`
	PidsLimit         *int64 `json:"PidsLimit"`
	OomKillDisable    *bool  `json:"OomKillDisable"`
}

// CreateRequest is the body of POST /containers/create.
type CreateRequest struct {
	Config
	HostConfig       *HostConfig       `json:"HostConfig,omitempty"`
	NetworkingConfig *NetworkingConfig `json:"NetworkingConfig,omitempty"`
}

// CreateResponse answers POST /containers/create.
type CreateResponse struct {
	ID       string   `json:"Id"`
	Warnings []string `json:"Warnings"`
}

// State is a container's runtime state as inspect shows it.
type State struct {
	Status     string    `json:"Status"` // created, running, paused, restarting, removing, exited, dead
	Running    bool      `json:"Running"`
	Paused     bool      `json:"Paused"`
	Restarting bool      `json:"Restarting"`
	OOMKilled  bool      `json:"OOMKilled"`
	Dead       bool      `json:"Dead"`
	Pid        int       `json:"Pid"`
	ExitCode   int       `json:"ExitCode"`
	Error      string    `json:"Error"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
}

// ContainerJSON is the body of GET /containers/{id}/json.
type ContainerJSON struct {
	ID              string           `json:"Id"`
	Created         time.Time        `json:"Created"`
	Path            string           `json:"Path"`
	Args            []string         `json:"Args"`
	State           *State           `json:"State"`
	Image           string           `json:"Image"`
	ResolvConfPath  string           `json:"ResolvConfPath"`
	HostnamePath    string           `json:"HostnamePath"`
	HostsPath       string           `json:"HostsPath"`
	LogPath         string           `json:"LogPath"`
	Name            string           `json:"Name"`
	RestartCount    int              `json:"RestartCount"`
	Driver          string           `json:"Driver"`
	Platform        string           `json:"Platform"`
	MountLabel      string           `json:"MountLabel"`
	ProcessLabel    string           `json:"ProcessLabel"`
	AppArmorProfile string           `json:"AppArmorProfile"`
	ExecIDs         []string         `json:"ExecIDs"`
	HostConfig      *HostConfig      `json:"HostConfig"`
	GraphDriver     GraphDriver      `json:"GraphDriver"`
	Mounts          []MountPoint     `json:"Mounts"`
	Config          *Config          `json:"Config"`
	NetworkSettings *NetworkSettings `json:"NetworkSettings"`
}

// GraphDriver describes a container's root filesystem.
type GraphDriver struct {
	Name string            `json:"Name"`
	Data map[string]string `json:"Data"`
}

// MountPoint is a mount as inspect shows it.
type MountPoint struct {
	Type        string `json:"Type"`
	Name        string `json:"Name,omitempty"`
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	Driver      string `json:"Driver,omitempty"`
	Mode        string `json:"Mode"`
	RW          bool   `json:"RW"`
	Propagation string `json:"Propagation"`
}

// Mount is one entry of HostConfig.Mounts (the --mount flag).
type Mount struct {
	Type          string         `json:"Type"`
	Source        string         `json:"Source,omitempty"`
	Target        string         `json:"Target"`
	ReadOnly      bool           `json:"ReadOnly,omitempty"`
	BindOptions   *BindOptions   `json:"BindOptions,omitempty"`
	VolumeOptions *VolumeOptions `json:"VolumeOptions,omitempty"`
	TmpfsOptions  *TmpfsOptions  `json:"TmpfsOptions,omitempty"`
}

// BindOptions are the options of a bind mount.
type BindOptions struct {
	Propagation  string `json:"Propagation,omitempty"`
	NonRecursive bool   `json:"NonRecursive,omitempty"`
}

// VolumeOptions are the options of a volume mount.
type VolumeOptions struct {
	NoCopy       bool              `json:"NoCopy,omitempty"`
	Labels       map[string]string `json:"Labels,omitempty"`
	DriverConfig *struct {
		Name    string            `json:"Name"`
		Options map[string]string `json:"Options"`
	} `json:"DriverConfig,omitempty"`
}

// TmpfsOptions are the options of a tmpfs mount.
type TmpfsOptions struct {
	SizeBytes int64  `json:"SizeBytes,omitempty"`
	Mode      uint32 `json:"Mode,omitempty"`
}

// NetworkSettings is the network part of inspect.
type NetworkSettings struct {
	SandboxKey string                       `json:"SandboxKey"`
	IPAddress  string                       `json:"IPAddress"`
	Ports      map[string][]PortBinding     `json:"Ports"`
	Networks   map[string]*EndpointSettings `json:"Networks"`
}

// PortBinding is a published port.
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

// EndpointSettings is a container's attachment to one network.
type EndpointSettings struct {
	NetworkID   string   `json:"NetworkID"`
	EndpointID  string   `json:"EndpointID"`
	Gateway     string   `json:"Gateway"`
	IPAddress   string   `json:"IPAddress"`
	IPPrefixLen int      `json:"IPPrefixLen"`
	MacAddress  string   `json:"MacAddress"`
	Aliases     []string `json:"Aliases"`
}

// Port is an exposed or published port in container lists.
type Port struct {
	IP          string `json:"IP,omitempty"`
	PrivatePort uint16 `json:"PrivatePort"`
	PublicPort  uint16 `json:"PublicPort,omitempty"`
	Type        string `json:"Type"`
}

// ContainerSummary is one entry of GET /containers/json.
type ContainerSummary struct {
	ID         string            `json:"Id"`
	Names      []string          `json:"Names"`
	Image      string            `json:"Image"`
	ImageID    string            `json:"ImageID"`
	Command    string            `json:"Command"`
	Created    int64             `json:"Created"`
	Ports      []Port            `json:"Ports"`
	Labels     map[string]string `json:"Labels"`
	State      string            `json:"State"`
	Status     string            `json:"Status"`
	HostConfig struct {
		NetworkMode string `json:"NetworkMode"`
	} `json:"HostConfig"`
	NetworkSettings struct {
		Networks map[string]*EndpointSettings `json:"Networks"`
	} `json:"NetworkSettings"`
	Mounts []MountPoint `json:"Mounts"`
	// SizeRw and SizeRootFs are set when the list asks for sizes
	// (size=1) and in /system/df.
	SizeRw     int64 `json:"SizeRw,omitempty"`
	SizeRootFs int64 `json:"SizeRootFs,omitempty"`
}

// WaitResponse answers POST /containers/{id}/wait.
type WaitResponse struct {
	StatusCode int        `json:"StatusCode"`
	Error      *WaitError `json:"Error,omitempty"`
}

// WaitError reports why waiting failed.
type WaitError struct {
	Message string `json:"Message"`
}

// ExecConfig is the body of POST /containers/{id}/exec.
type ExecConfig struct {
	User         string   `json:"User"`
	Privileged   bool     `json:"Privileged"`
	Tty          bool     `json:"Tty"`
	AttachStdin  bool     `json:"AttachStdin"`
	AttachStderr bool     `json:"AttachStderr"`
	AttachStdout bool     `json:"AttachStdout"`
	Detach       bool     `json:"Detach"`
	DetachKeys   string   `json:"DetachKeys"`
	Env          []string `json:"Env"`
	WorkingDir   string   `json:"WorkingDir"`
	Cmd          []string `json:"Cmd"`
	ConsoleSize  *[2]uint `json:"ConsoleSize,omitempty"`
}

// ExecStartConfig is the body of POST /exec/{id}/start.
type ExecStartConfig struct {
	Detach      bool     `json:"Detach"`
	Tty         bool     `json:"Tty"`
	ConsoleSize *[2]uint `json:"ConsoleSize,omitempty"`
}

// IDResponse answers requests that create something identified by an ID.
type IDResponse struct {
	ID string `json:"Id"`
}

// ExecInspect answers GET /exec/{id}/json.
type ExecInspect struct {
	ID            string        `json:"ID"`
	Running       bool          `json:"Running"`
	ExitCode      *int          `json:"ExitCode"`
	ProcessConfig ProcessConfig `json:"ProcessConfig"`
	OpenStdin     bool          `json:"OpenStdin"`
	OpenStderr    bool          `json:"OpenStderr"`
	OpenStdout    bool          `json:"OpenStdout"`
	CanRemove     bool          `json:"CanRemove"`
	ContainerID   string        `json:"ContainerID"`
	DetachKeys    string        `json:"DetachKeys"`
	Pid           int           `json:"Pid"`
}

// ProcessConfig describes an exec's process.
type ProcessConfig struct {
	Privileged bool     `json:"privileged"`
	User       string   `json:"user"`
	Tty        bool     `json:"tty"`
	Entrypoint string   `json:"entrypoint"`
	Arguments  []string `json:"arguments"`
}

// ImageSummary is one entry of GET /images/json.
type ImageSummary struct {
	ID          string            `json:"Id"`
	ParentID    string            `json:"ParentId"`
	RepoTags    []string          `json:"RepoTags"`
	RepoDigests []string          `json:"RepoDigests"`
	Created     int64             `json:"Created"`
	Size        int64             `json:"Size"`
	SharedSize  int64             `json:"SharedSize"`
	VirtualSize int64             `json:"VirtualSize,omitempty"`
	Labels      map[string]string `json:"Labels"`
	Containers  int64             `json:"Containers"`
}

// ImageInspect answers GET /images/{name}/json.
type ImageInspect struct {
	ID            string         `json:"Id"`
	RepoTags      []string       `json:"RepoTags"`
	RepoDigests   []string       `json:"RepoDigests"`
	Parent        string         `json:"Parent"`
	Comment       string         `json:"Comment"`
	Created       string         `json:"Created"`
	DockerVersion string         `json:"DockerVersion"`
	Author        string         `json:"Author"`
	Config        *Config        `json:"Config"`
	Architecture  string         `json:"Architecture"`
	Variant       string         `json:"Variant,omitempty"`
	Os            string         `json:"Os"`
	Size          int64          `json:"Size"`
	VirtualSize   int64          `json:"VirtualSize,omitempty"`
	GraphDriver   GraphDriver    `json:"GraphDriver"`
	RootFS        RootFS         `json:"RootFS"`
	Metadata      map[string]any `json:"Metadata"`
}

// RootFS lists an image's layers.
type RootFS struct {
	Type   string   `json:"Type"`
	Layers []string `json:"Layers"`
}

// ImageDeleteItem is one entry of DELETE /images/{name}'s answer.
type ImageDeleteItem struct {
	Untagged string `json:"Untagged,omitempty"`
	Deleted  string `json:"Deleted,omitempty"`
}

// HistoryItem is one entry of GET /images/{name}/history.
type HistoryItem struct {
	ID        string   `json:"Id"`
	Created   int64    `json:"Created"`
	CreatedBy string   `json:"CreatedBy"`
	Tags      []string `json:"Tags"`
	Size      int64    `json:"Size"`
	Comment   string   `json:"Comment"`
}

// JSONMessage is one line of a streamed progress reply (load, pull, build).
type JSONMessage struct {
	Stream         string          `json:"stream,omitempty"`
	Status         string          `json:"status,omitempty"`
	ProgressDetail *ProgressDetail `json:"progressDetail,omitempty"`
	ID             string          `json:"id,omitempty"`
	Progress       string          `json:"progress,omitempty"`
	Error          string          `json:"error,omitempty"`
	ErrorDetail    *ErrorDetail    `json:"errorDetail,omitempty"`
	Aux            any             `json:"aux,omitempty"`
}

// ProgressDetail is the byte count of a pull or push progress line
// (empty, "{}", on the other lines of a layer, as Docker sends it).
type ProgressDetail struct {
	Current int64 `json:"current,omitempty"`
	Total   int64 `json:"total,omitempty"`
}

// AuthConfig is a registry's credentials: the body of POST /auth and,
// base64url-encoded, the X-Registry-Auth header of pull and push.
type AuthConfig struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"` // base64 of "username:password"
	Email         string `json:"email,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// AuthResponse answers POST /auth.
type AuthResponse struct {
	Status        string `json:"Status"`
	IdentityToken string `json:"IdentityToken"`
}

// PushResult is the aux message that ends a push of one tag.
type PushResult struct {
	Tag    string `json:"Tag"`
	Digest string `json:"Digest"`
	Size   int    `json:"Size"`
}

// ErrorDetail carries a streamed error.
type ErrorDetail struct {
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
	// Code is an exit status (a failed build's RUN), as Docker sends it.
	Code int `json:"code,omitempty"`
}

// PruneReport answers the prune routes.
type PruneReport struct {
	ContainersDeleted []string          `json:"ContainersDeleted,omitempty"`
	ImagesDeleted     []ImageDeleteItem `json:"ImagesDeleted,omitempty"`
	SpaceReclaimed    uint64            `json:"SpaceReclaimed"`
}

// Stats is one sample of GET /containers/{id}/stats, in Docker's shape.
type Stats struct {
	Read        time.Time      `json:"read"`
	PreRead     time.Time      `json:"preread"`
	Name        string         `json:"name"`
	ID          string         `json:"id"`
	PidsStats   PidsStats      `json:"pids_stats"`
	CPUStats    CPUStats       `json:"cpu_stats"`
	PreCPUStats CPUStats       `json:"precpu_stats"`
	MemoryStats MemoryStats    `json:"memory_stats"`
	BlkioStats  BlkioStats     `json:"blkio_stats"`
	Networks    map[string]any `json:"networks,omitempty"`
}

// PidsStats is the pids part of Stats.
type PidsStats struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// CPUStats is the CPU part of Stats.
type CPUStats struct {
	CPUUsage struct {
		TotalUsage        uint64 `json:"total_usage"`
		UsageInKernelmode uint64 `json:"usage_in_kernelmode"`
		UsageInUsermode   uint64 `json:"usage_in_usermode"`
	} `json:"cpu_usage"`
	SystemUsage    uint64 `json:"system_cpu_usage,omitempty"`
	OnlineCPUs     uint32 `json:"online_cpus,omitempty"`
	ThrottlingData struct {
		Periods          uint64 `json:"periods"`
		ThrottledPeriods uint64 `json:"throttled_periods"`
		ThrottledTime    uint64 `json:"throttled_time"`
	} `json:"throttling_data"`
}

// MemoryStats is the memory part of Stats.
type MemoryStats struct {
	Usage    uint64            `json:"usage,omitempty"`
	MaxUsage uint64            `json:"max_usage,omitempty"`
	Stats    map[string]uint64 `json:"stats,omitempty"`
	Failcnt  uint64            `json:"failcnt,omitempty"`
	Limit    uint64            `json:"limit,omitempty"`
}

// BlkioStats is the block I/O part of Stats.
type BlkioStats struct {
	IoServiceBytesRecursive []BlkioEntry `json:"io_service_bytes_recursive"`
}

// BlkioEntry is one block I/O counter.
type BlkioEntry struct {
	Major uint64 `json:"major"`
	Minor uint64 `json:"minor"`
	Op    string `json:"op"`
	Value uint64 `json:"value"`
}

// TopResponse answers GET /containers/{id}/top.
type TopResponse struct {
	Titles    []string   `json:"Titles"`
	Processes [][]string `json:"Processes"`
}

// VersionResponse answers GET /version.
type VersionResponse struct {
	Platform      struct{ Name string } `json:"Platform"`
	Version       string                `json:"Version"`
	APIVersion    string                `json:"ApiVersion"`
	MinAPIVersion string                `json:"MinAPIVersion"`
	GitCommit     string                `json:"GitCommit"`
	GoVersion     string                `json:"GoVersion"`
	Os            string                `json:"Os"`
	Arch          string                `json:"Arch"`
	KernelVersion string                `json:"KernelVersion"`
	BuildTime     string                `json:"BuildTime"`
	Components    []VersionComponent    `json:"Components,omitempty"`
}

// VersionComponent is one part of the server in /version (the CLI prints
// them under "Server:").
type VersionComponent struct {
	Name    string            `json:"Name"`
	Version string            `json:"Version"`
	Details map[string]string `json:"Details,omitempty"`
}

// Info answers GET /info.
type Info struct {
	ID                string                 `json:"ID"`
	Containers        int                    `json:"Containers"`
	ContainersRunning int                    `json:"ContainersRunning"`
	ContainersPaused  int                    `json:"ContainersPaused"`
	ContainersStopped int                    `json:"ContainersStopped"`
	Images            int                    `json:"Images"`
	Driver            string                 `json:"Driver"`
	MemoryLimit       bool                   `json:"MemoryLimit"`
	SwapLimit         bool                   `json:"SwapLimit"`
	CPUCfsPeriod      bool                   `json:"CpuCfsPeriod"`
	CPUCfsQuota       bool                   `json:"CpuCfsQuota"`
	PidsLimit         bool                   `json:"PidsLimit"`
	KernelVersion     string                 `json:"KernelVersion"`
	OperatingSystem   string                 `json:"OperatingSystem"`
	OSType            string                 `json:"OSType"`
	Architecture      string                 `json:"Architecture"`
	NCPU              int                    `json:"NCPU"`
	MemTotal          int64                  `json:"MemTotal"`
	DockerRootDir     string                 `json:"DockerRootDir"`
	Name              string                 `json:"Name"`
	ServerVersion     string                 `json:"ServerVersion"`
	CgroupDriver      string                 `json:"CgroupDriver"`
	CgroupVersion     string                 `json:"CgroupVersion"`
	DefaultRuntime    string                 `json:"DefaultRuntime"`
	Runtimes          map[string]RuntimeInfo `json:"Runtimes"`
	SecurityOptions   []string               `json:"SecurityOptions"`
	Labels            []string               `json:"Labels"`
	// The fields below are read by the docker CLI and docker-compose.
	LoggingDriver      string      `json:"LoggingDriver,omitempty"`
	LiveRestoreEnabled bool        `json:"LiveRestoreEnabled"`
	Swarm              SwarmInfo   `json:"Swarm"`
	Plugins            PluginsInfo `json:"Plugins"`
	IndexServerAddress string      `json:"IndexServerAddress,omitempty"`
	SystemTime         string      `json:"SystemTime,omitempty"`
	NGoroutines        int         `json:"NGoroutines"`
	Warnings           []string    `json:"Warnings"`
}

// SwarmInfo says that berth is no swarm node.
type SwarmInfo struct {
	NodeID           string `json:"NodeID"`
	NodeAddr         string `json:"NodeAddr"`
	LocalNodeState   string `json:"LocalNodeState"`
	ControlAvailable bool   `json:"ControlAvailable"`
	Error            string `json:"Error"`
}

// PluginsInfo lists the volume, network and log drivers.
type PluginsInfo struct {
	Volume  []string `json:"Volume"`
	Network []string `json:"Network"`
	Log     []string `json:"Log"`
}

// RuntimeInfo names an OCI runtime binary.
type RuntimeInfo struct {
	Path string `json:"path"`
}

// Volume is a volume as the volume routes show it.
type Volume struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Mountpoint string            `json:"Mountpoint"`
	CreatedAt  string            `json:"CreatedAt,omitempty"`
	Labels     map[string]string `json:"Labels"`
	Scope      string            `json:"Scope"`
	Options    map[string]string `json:"Options"`
	UsageData  *VolumeUsage      `json:"UsageData,omitempty"`
}

// VolumeUsage is a volume's disk use and reference count.
type VolumeUsage struct {
	Size     int64 `json:"Size"`
	RefCount int64 `json:"RefCount"`
}

// VolumeCreateRequest is the body of POST /volumes/create.
type VolumeCreateRequest struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	DriverOpts map[string]string `json:"DriverOpts"`
	Labels     map[string]string `json:"Labels"`
}

// VolumeListResponse answers GET /volumes.
type VolumeListResponse struct {
	Volumes  []Volume `json:"Volumes"`
	Warnings []string `json:"Warnings"`
}

// VolumePruneReport answers POST /volumes/prune.
type VolumePruneReport struct {
	VolumesDeleted []string `json:"VolumesDeleted"`
	SpaceReclaimed uint64   `json:"SpaceReclaimed"`
}

// Network is a network as the network routes show it.
type Network struct {
	Name       string                     `json:"Name"`
	ID         string                     `json:"Id"`
	Created    time.Time                  `json:"Created"`
	Scope      string                     `json:"Scope"`
	Driver     string                     `json:"Driver"`
	EnableIPv6 bool                       `json:"EnableIPv6"`
	IPAM       IPAM                       `json:"IPAM"`
	Internal   bool                       `json:"Internal"`
	Attachable bool                       `json:"Attachable"`
	Containers map[string]NetworkEndpoint `json:"Containers"`
	Options    map[string]string          `json:"Options"`
	Labels     map[string]string          `json:"Labels"`
}

// IPAM is a network's address configuration.
type IPAM struct {
	Driver  string            `json:"Driver"`
	Config  []IPAMConfig      `json:"Config"`
	Options map[string]string `json:"Options"`
}

// IPAMConfig is one subnet of a network.
type IPAMConfig struct {
	Subnet  string `json:"Subnet,omitempty"`
	Gateway string `json:"Gateway,omitempty"`
	IPRange string `json:"IPRange,omitempty"`
}

// NetworkEndpoint is a container attached to a network, in network inspect.
type NetworkEndpoint struct {
	Name        string `json:"Name"`
	EndpointID  string `json:"EndpointID"`
	MacAddress  string `json:"MacAddress"`
	IPv4Address string `json:"IPv4Address"`
	IPv6Address string `json:"IPv6Address"`
}

// NetworkCreateRequest is the body of POST /networks/create.
type NetworkCreateRequest struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Internal   bool              `json:"Internal"`
	Attachable bool              `json:"Attachable"`
	IPAM       *IPAM             `json:"IPAM"`
	Options    map[string]string `json:"Options"`
	Labels     map[string]string `json:"Labels"`
}

// NetworkCreateResponse answers POST /networks/create.
type NetworkCreateResponse struct {
	ID      string `json:"Id"`
	Warning string `json:"Warning"`
}

// NetworkConnectRequest is the body of POST /networks/{id}/connect.
type NetworkConnectRequest struct {
	Container      string                 `json:"Container"`
	EndpointConfig *EndpointConfigRequest `json:"EndpointConfig,omitempty"`
}

// NetworkDisconnectRequest is the body of POST /networks/{id}/disconnect.
type NetworkDisconnectRequest struct {
	Container string `json:"Container"`
	Force     bool   `json:"Force"`
}

// EndpointConfigRequest is the endpoint part of create and connect requests.
type EndpointConfigRequest struct {
	IPAMConfig *EndpointIPAMConfig `json:"IPAMConfig,omitempty"`
	Aliases    []string            `json:"Aliases"`
}

// EndpointIPAMConfig asks for a static address.
type EndpointIPAMConfig struct {
	IPv4Address string `json:"IPv4Address,omitempty"`
}

// NetworkingConfig is the networking part of a create request.
type NetworkingConfig struct {
	EndpointsConfig map[string]*EndpointConfigRequest `json:"EndpointsConfig"`
}

// NetworkPruneReport answers POST /networks/prune.
type NetworkPruneReport struct {
	NetworksDeleted []string `json:"NetworksDeleted"`
}

// UpdateConfig is the body of POST /containers/{id}/update: the resource
// limits to change (zero values and a nil PidsLimit are left as they are)
// and, when its Name is set, a new restart policy.
type UpdateConfig struct {
	Resources
	RestartPolicy RestartPolicy `json:"RestartPolicy"`
}

// UpdateResponse answers POST /containers/{id}/update.
type UpdateResponse struct {
	Warnings []string `json:"Warnings"`
}

// DiskUsage answers GET /system/df.
type DiskUsage struct {
	LayersSize int64              `json:"LayersSize"`
	Images     []ImageSummary     `json:"Images"`
	Containers []ContainerSummary `json:"Containers"`
	Volumes    []Volume           `json:"Volumes"`
	BuildCache []any              `json:"BuildCache"`
}

// BuildCachePruneReport answers POST /build/prune.
type BuildCachePruneReport struct {
	CachesDeleted  []string `json:"CachesDeleted"`
	SpaceReclaimed uint64   `json:"SpaceReclaimed"`
}

// Event is one message of GET /events (Docker's events.Message).
type Event struct {
	Type     string     `json:"Type"`
	Action   string     `json:"Action"`
	Actor    EventActor `json:"Actor"`
	Scope    string     `json:"scope"`
	Time     int64      `json:"time"`
	TimeNano int64      `json:"timeNano"`
}

// EventActor names the object an event is about; for containers its
// Attributes hold the container's labels, name and image (and exitCode
// on die, signal on kill).
type EventActor struct {
	ID         string            `json:"ID"`
	Attributes map[string]string `json:"Attributes"`
}
