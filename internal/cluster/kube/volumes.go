package kube

// The names the local-path provisioner (controller/localpath), the
// scheduler's volume binding and the node agent share about persistent
// volumes. See docs/controllers.md, "Persistent volumes".
const (
	// LocalPathProvisioner is the provisioner of berth's node-local
	// volumes; LocalPathClass the StorageClass the control plane creates
	// for it (the default class).
	LocalPathProvisioner = "berth.dev/local-path"
	LocalPathClass       = "local-path"

	// AnnSelectedNode is set on a claim by the scheduler: the node the
	// first pod using it goes to (Kubernetes' name).
	AnnSelectedNode = "volume.kubernetes.io/selected-node"
	// AnnProvisionedBy names the provisioner of a dynamically made volume.
	AnnProvisionedBy = "pv.kubernetes.io/provisioned-by"
	// AnnVolumesDir is the node annotation with the agent's --volumes-dir:
	// local-path volumes of the node are directories under it.
	AnnVolumesDir = "berth.dev/volumes-dir"
	// DefaultVolumesDir is the agent's --volumes-dir default.
	DefaultVolumesDir = "/var/lib/berth/volumes"
)
