package kube

import (
	_ "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	_ "k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	_ "k8s.io/apimachinery/pkg/util/intstr"
	_ "k8s.io/apimachinery/pkg/util/strategicpatch"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "k8s.io/client-go/tools/cache"
	_ "k8s.io/client-go/tools/portforward"
	_ "k8s.io/client-go/tools/remotecommand"
	_ "k8s.io/client-go/transport/spdy"
	_ "k8s.io/client-go/util/flowcontrol"
	_ "k8s.io/client-go/util/retry"
	_ "k8s.io/client-go/util/workqueue"
	_ "k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)
