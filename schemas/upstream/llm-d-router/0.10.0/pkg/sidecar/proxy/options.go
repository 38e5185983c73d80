/*
Copyright 2026 The llm-d Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

	http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package proxy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	logutil "github.com/llm-d/llm-d-router/pkg/common/observability/logging"
	"github.com/llm-d/llm-d-router/pkg/common/routing"
	"sigs.k8s.io/yaml"
)

const (
	// MoRIIOFeatureEnabled controls whether MoRI-IO WRITE-mode and Wide-EP
	// features are available. Set to false to keep the feature dormant until
	// full validation and CI integration is complete in a future RC.
	//
	// When false, any attempt to use --moriio-write-mode or related flags will
	// fail with a clear error message directing users to wait for the feature
	// to be officially released.
	//
	// AMD-MoRI-IO: Feature enabled for 1P1D (DP=EP=8) intra-node Wide-EP
	// and 2P2D (DP=EP=16) inter-node Wide-EP with LeaderWorkerSet support.
	MoRIIOFeatureEnabled = true

	// Flags
	port                      = "port"
	modelServerPort           = "model-server-port"
	vllmPort                  = "vllm-port"
	dataParallelSize          = "data-parallel-size"
	kvConnector               = "kv-connector"
	ecConnector               = "ec-connector"
	mooncakeBootstrapPortFlag = "mooncake-bootstrap-port"
	p2pConnectorPortFlag      = "p2p-connector-port"
	enableP2PPull             = "enable-p2p-pull"
	enableSSRFProtection      = "enable-ssrf-protection"
	enablePrefillerSampling   = "enable-prefiller-sampling"
	enableTLS                 = "enable-tls"
	tlsInsecureSkipVerify     = "tls-insecure-skip-verify"
	secureServing             = "secure-proxy"
	certPath                  = "cert-path"
	inferencePool             = "inference-pool"
	poolGroup                 = "pool-group"
	maxIdleConnsPerHost       = "max-idle-conns-per-host"
	prefillMaxRetries         = "prefill-max-retries"
	prefillRetryBackoff       = "prefill-retry-backoff"
	decodeChunkSize           = "decode-chunk-size"
	inlineConfiguration       = "configuration"
	configurationFile         = "configuration-file"
	tracingFlag               = "tracing"
	metricsPort               = "metrics-port"

	// Environment variables
	envInferencePool           = "INFERENCE_POOL"
	envEnablePrefillerSampling = "ENABLE_PREFILLER_SAMPLING"
	envMooncakeBootstrapPort   = "MOONCAKE_BOOTSTRAP_PORT"
	envP2PConnectorPort        = "P2P_CONNECTOR_PORT"

	// Defaults
	defaultPort                  = "8000"
	defaultVLLMPort              = "8200"
	defaultDataParallelSize      = 1
	defaultMooncakeBootstrapPort = 8998
	defaultP2PConnectorPort      = 7777

	// defaultMoRIIOParallelDecodeWaitTimeout backstops the parallel WRITE
	// dispatch: it bounds how long the decode leg waits on the prefill outcome
	// (and thus KV) before being cancelled, so a hung/failed prefill fails the
	// request instead of hanging. Prefill in parallel dispatch is capped to one
	// token, so it normally resolves well within this window.
	defaultMoRIIOParallelDecodeWaitTimeout = 30 * time.Second

	// TLS stages
	prefillStage = "prefiller"
	decodeStage  = "decoder"
	encodeStage  = "encoder"
)

// yamlConfiguration represents structure of YAML configuration for sidecar proxy
type yamlConfiguration struct {
	Port                    int      `json:"port,omitempty"`
	ModelServerPort         int      `json:"model-server-port,omitempty"`
	VLLMPort                int      `json:"vllm-port,omitempty"`
	MooncakeBootstrapPort   int      `json:"mooncake-bootstrap-port,omitempty"`
	P2PConnectorPort        int      `json:"p2p-connector-port,omitempty"`
	DataParallelSize        int      `json:"data-parallel-size,omitempty"`
	KVConnector             string   `json:"kv-connector,omitempty"`
	ECConnector             string   `json:"ec-connector,omitempty"`
	EnableSSRFProtection    *bool    `json:"enable-ssrf-protection,omitempty"`
	EnablePrefillerSampling *bool    `json:"enable-prefiller-sampling,omitempty"`
	EnableP2PPull           *bool    `json:"enable-p2p-pull,omitempty"`
	SecureServing           *bool    `json:"secure-proxy,omitempty"`
	CertPath                string   `json:"cert-path,omitempty"`
	EnableTLS               []string `json:"enable-tls,omitempty"`
	TLSInsecureSkipVerify   []string `json:"tls-insecure-skip-verify,omitempty"`
	InferencePool           string   `json:"inference-pool,omitempty"`
	PoolGroup               string   `json:"pool-group,omitempty"`
	MaxIdleConnsPerHost     int      `json:"max-idle-conns-per-host,omitempty"`
	PrefillMaxRetries       *int     `json:"prefill-max-retries,omitempty"`
	PrefillRetryBackoff     string   `json:"prefill-retry-backoff,omitempty"`
	DecodeChunkSize         int      `json:"decode-chunk-size,omitempty"`
	Tracing                 *bool    `json:"tracing,omitempty"`
	MetricsPort             int      `json:"metrics-port,omitempty"`
}

// Options holds the CLI-facing configuration for the pd-sidecar proxy.
// It embeds Config which represents the complete processed runtime configuration.
// After Options.Complete(), the embedded Config is fully populated and ready to
// pass directly to NewProxy.
type Options struct {
	// Config holds the processed runtime configuration (populated by Complete()).
	// Fields with direct CLI flags are bound here via embedding; derived fields are set in Complete().
	Config

	// modelServerPort is the port the model server (vLLM, SGLang, etc.) is listening on; used to compute Config.DecoderURL in Complete().
	modelServerPort string
	// vllmPort is the deprecated alias for modelServerPort; migrated in Complete().
	vllmPort string
	// enableTLS is the list of stages to enable TLS for; used to compute Config.UseTLSFor* in Complete().
	enableTLS []string
	// tlsInsecureSkipVerify is the list of stages to skip TLS verification for; used to compute Config.InsecureSkipVerifyFor* in Complete().
	tlsInsecureSkipVerify []string
	// inferencePool in namespace/name or name format; used to compute Config.InferencePoolNamespace/Name in Complete().
	inferencePool string

	loggingOptions      zap.Options // loggingOptions holds the zap logging configuration
	pflagSet            *pflag.FlagSet
	inlineConfiguration string
	fileConfiguration   string
}

var (
	// supportedKVConnectors defines all valid P/D KV connector types
	supportedKVConnectors = map[string]struct{}{
		KVConnectorNIXLV2:        {},
		KVConnectorSharedStorage: {},
		KVConnectorSGLang:        {},
		KVConnectorMooncake:      {},
		KVConnectorOffloading:    {},
	}

	// supportedECConnectors defines all valid E/P EC connector types
	supportedECConnectors = map[string]struct{}{
		ECExampleConnector: {},
		ECConnectorNIXL:    {},
	}

	// supportedTLSStages defines all valid stages for TLS configuration
	supportedTLSStages = map[string]struct{}{
		prefillStage: {},
		decodeStage:  {},
		encodeStage:  {},
	}

	supportedKVConnectorNamesStr = strings.Join([]string{KVConnectorNIXLV2, KVConnectorSharedStorage, KVConnectorSGLang, KVConnectorMooncake, KVConnectorOffloading}, ", ")
	supportedECConnectorNamesStr = strings.Join([]string{ECExampleConnector, ECConnectorNIXL}, ", ")

	supportedTLSStageNamesStr = strings.Join([]string{prefillStage, decodeStage, encodeStage}, ", ")
)

// NewOptions returns a new Options struct initialized with default values.
func NewOptions() *Options {
	enablePrefillerSampling := false
	if val, err := strconv.ParseBool(os.Getenv(envEnablePrefillerSampling)); err == nil {
		enablePrefillerSampling = val
	}

	mooncakeBootstrapPort := defaultMooncakeBootstrapPort
	if portStr := os.Getenv(envMooncakeBootstrapPort); portStr != "" {
		if port, err := strconv.Atoi(portStr); err == nil {
			mooncakeBootstrapPort = port
		}
	}

	p2pConnectorPort := defaultP2PConnectorPort
	if portStr := os.Getenv(envP2PConnectorPort); portStr != "" {
		if port, err := strconv.Atoi(portStr); err == nil {
			p2pConnectorPort = port
		}
	}

	return &Options{
		Config: Config{
			Port:                    defaultPort,
			KVConnector:             KVConnectorNIXLV2,
			DataParallelSize:        defaultDataParallelSize,
			SecureServing:           true,
			EnablePrefillerSampling: enablePrefillerSampling,
			MaxIdleConnsPerHost:     defaultMaxIdleConnsPerHost,
			PrefillMaxRetries:       0,
			PrefillRetryBackoff:     200 * time.Millisecond,
			MooncakeBootstrapPort:   mooncakeBootstrapPort,
			P2PConnectorPort:        p2pConnectorPort,
			PoolGroup:               routing.InferencePoolAPIGroup,
			DecodeChunkSize:         0,
			Tracing:                 false,
			// MoRI-IO defaults: off, preserving existing NIXLv2 behaviour.
			// Port defaults match vLLM's MoRI-IO connector defaults.
			MoRIIOWriteMode:           false,
			MoRIIODecodeNotifyPort:    61005,
			MoRIIODecodeHandshakePort: 6301,
			MoRIIODecodePodIP:         os.Getenv("POD_IP"),
			MoRIIOParallelDispatch:    false,

			MoRIIOParallelDecodeWaitTimeout: defaultMoRIIOParallelDecodeWaitTimeout,
			MoRIIOPrefillHandshakePort:      6301,
			MoRIIOPrefillNotifyPort:         61005,
			MoRIIOTPSize:                    1,
			MoRIIODPSize:                    1,
			// Wide-EP multi-pod: empty disables fan-out (single-pod fallback).
			MoRIIORemoteHosts: nil,
			MoRIIODPSizeLocal: 0,
			MoRIIODecodeHosts: nil,
		},
		vllmPort:      defaultVLLMPort,
		inferencePool: os.Getenv(envInferencePool),
	}
}

// AddFlags binds the Options fields to command-line flags on the given FlagSet.
// It also sets up zap logging flags and integrates Go flags with pflag.
func (opts *Options) AddFlags(fs *pflag.FlagSet) {
	if opts.pflagSet == nil {
		opts.pflagSet = fs
	}
	goFlagSet := flag.NewFlagSet("goFlagSet", flag.ContinueOnError)
	// Add logging flags to the standard flag set
	opts.loggingOptions.BindFlags(goFlagSet)
	// Add Go flags to pflag (for zap options compatibility)
	fs.AddGoFlagSet(goFlagSet)
	fs.StringVar(&opts.Port, port, opts.Port, "the port the sidecar is listening on")
	fs.StringVar(&opts.modelServerPort, modelServerPort, opts.modelServerPort,
		fmt.Sprintf("the port the model server is listening on (default %s)", defaultVLLMPort))
	fs.StringVar(&opts.vllmPort, vllmPort, opts.vllmPort, "the port the model server is listening on")
	_ = fs.MarkDeprecated(vllmPort, "use --model-server-port instead; --vllm-port will be removed after the deprecation period")
	fs.IntVar(&opts.DataParallelSize, dataParallelSize, opts.DataParallelSize, "the model server's data-parallel size")
	fs.StringVar(&opts.KVConnector, kvConnector, opts.KVConnector,
		"the KV protocol between prefiller and decoder. Supported: "+supportedKVConnectorNamesStr)
	fs.StringVar(&opts.ECConnector, ecConnector, opts.ECConnector,
		"the EC protocol between encoder and prefiller (for EPD mode). Supported: "+supportedECConnectorNamesStr+". Leave empty to skip encoder stage.")
	fs.IntVar(&opts.MooncakeBootstrapPort, mooncakeBootstrapPortFlag, opts.MooncakeBootstrapPort,
		"the port used to query the Mooncake bootstrap endpoint on prefill pods (only used with --kv-connector=mooncake)")
	fs.IntVar(&opts.P2PConnectorPort, p2pConnectorPortFlag, opts.P2PConnectorPort,
		"the prefiller's OffloadingConnector P2P tier listening port, injected as remote_port on the decode leg; with --data-parallel-size > 1 this is the rank-0 port and rank r uses port+r (used with --kv-connector=offloading or --enable-p2p-pull)")
	fs.BoolVar(&opts.EnableP2PPull, enableP2PPull, opts.EnableP2PPull,
		"declare the OffloadingConnector P2P tier available for cached-prefix pulls when the PD connector is NIXL, i.e. engines run MultiConnector(NixlConnector + OffloadingConnector). Rejected with any other --kv-connector; offloading provides the tier natively without this flag.")
	fs.BoolVar(&opts.SecureServing, secureServing, opts.SecureServing, "Enables secure proxy. Defaults to true.")
	fs.StringVar(&opts.CertPath, certPath, opts.CertPath, "The path to the certificate for secure proxy. The certificate and private key files are assumed to be named tls.crt and tls.key, respectively. If not set, and secureProxy is enabled, then a self-signed certificate is used (for testing).")
	fs.BoolVar(&opts.EnableSSRFProtection, enableSSRFProtection, opts.EnableSSRFProtection, "enable SSRF protection using InferencePool allowlisting")
	fs.BoolVar(&opts.EnablePrefillerSampling, enablePrefillerSampling, opts.EnablePrefillerSampling, "if true, the target prefill instance will be selected randomly from among the provided prefill host values")
	fs.StringVar(&opts.PoolGroup, poolGroup, opts.PoolGroup, "group of the InferencePool this Endpoint Picker is associated with.")
	fs.IntVar(&opts.DecodeChunkSize, decodeChunkSize, opts.DecodeChunkSize, "enables chunked decode mode when > 0; value is the token budget per chunk. For best performance should be a multiple of the block size.")
	fs.BoolVar(&opts.Tracing, tracingFlag, opts.Tracing, "Enable OpenTelemetry tracing")
	fs.IntVar(&opts.MetricsPort, metricsPort, opts.MetricsPort, "Port for the Prometheus /metrics endpoint (exposes the moriio_dns_* counters). 0 (the default) disables it. Takes precedence over the MORIIO_METRICS_ADDR env var.")

	// MoRI-IO WRITE-mode flags. Only meaningful with --kv-connector=nixlv2
	// against vLLM engines running MoRI-IO in WRITE mode.
	fs.BoolVar(&opts.MoRIIOWriteMode, "moriio-write-mode", opts.MoRIIOWriteMode,
		"Enable MoRI-IO WRITE-mode passthrough in kv_transfer_params. Requires --kv-connector=nixlv2.")
	fs.IntVar(&opts.MoRIIODecodeNotifyPort, "moriio-decode-notify-port", opts.MoRIIODecodeNotifyPort,
		"Base MoRI-IO notify port on the decode pod.")
	fs.StringVar(&opts.MoRIIODecodePodIP, "moriio-local-pod-ip", opts.MoRIIODecodePodIP,
		"Decode pod's routable address, used as the prefill leg's remote_host. "+
			"A Kubernetes DNS name (e.g., 'pod-name.namespace.svc.cluster.local') "+
			"is resolved to an IP at startup; a literal IP is used as-is. "+
			"Defaults to the POD_IP env var. Required with --moriio-write-mode.")
	fs.IntVar(&opts.MoRIIODecodeHandshakePort, "moriio-decode-handshake-port", opts.MoRIIODecodeHandshakePort,
		"Base MoRI-IO handshake port on the decode pod.")

	// Concurrent-dispatch flags: synthesise decode's kv_transfer_params from
	// config so prefill and decode dispatch can overlap.
	fs.BoolVar(&opts.MoRIIOParallelDispatch, "moriio-parallel-dispatch", opts.MoRIIOParallelDispatch,
		"Fire prefill and decode concurrently. OFF by default (serial dispatch via handleNIXLV2 is the SLA-safe path); opt-in only. Requires --moriio-write-mode.")
	fs.DurationVar(&opts.MoRIIOParallelDecodeWaitTimeout, "moriio-parallel-decode-wait-timeout", opts.MoRIIOParallelDecodeWaitTimeout,
		"Backstop timeout for parallel dispatch: how long decode may wait on the prefill outcome/KV before being cancelled so the request fails instead of hanging. Only used with --moriio-parallel-dispatch.")
	fs.IntVar(&opts.MoRIIOPrefillHandshakePort, "moriio-prefill-handshake-port", opts.MoRIIOPrefillHandshakePort,
		"Prefill pod's base MoRI-IO handshake port, used to build the decode leg in parallel-dispatch mode.")
	fs.IntVar(&opts.MoRIIOPrefillNotifyPort, "moriio-prefill-notify-port", opts.MoRIIOPrefillNotifyPort,
		"Prefill pod's base MoRI-IO notify port.")
	fs.IntVar(&opts.MoRIIOTPSize, "moriio-tp-size", opts.MoRIIOTPSize,
		"Tensor-parallel size of the engines, echoed into kv_transfer_params[tp_size].")
	fs.IntVar(&opts.MoRIIODPSize, "moriio-dp-size", opts.MoRIIODPSize,
		"Data-parallel world size, emitted as kv_transfer_params[remote_dp_size] on both legs. "+
			"Set to the engine DP size for Wide-EP (TP=1, DP>1); default 1 leaves the wire unchanged.")

	// Wide-EP multi-pod fan-out. Optional: empty preserves single-pod behaviour.
	// remote_hosts carries the opposite side's pod DNS names (decode on the prefill
	// leg and vice versa); dp-size-local maps a global DP rank to a pod via
	// pod_idx = dp_rank / dp_size_local.
	// DNS names are resolved to IPs at startup (LWS-compatible).
	fs.StringSliceVar(&opts.MoRIIORemoteHosts, "moriio-remote-hosts", opts.MoRIIORemoteHosts,
		"Wide-EP: comma-separated remote (prefill-side) pod hosts for per-DP-rank fan-out. "+
			"Kubernetes DNS names (e.g., 'pod-name.namespace.svc.cluster.local') "+
			"are resolved to IPs at startup; literal IPs are used as-is. "+
			"Pair with --moriio-dp-size-local.")
	fs.IntVar(&opts.MoRIIODPSizeLocal, "moriio-dp-size-local", opts.MoRIIODPSizeLocal,
		"Wide-EP: per-pod DP size used to map a global DP rank to a pod index. "+
			"Must satisfy --moriio-dp-size = dp-size-local * len(hosts).")
	fs.StringSliceVar(&opts.MoRIIODecodeHosts, "moriio-decode-hosts", opts.MoRIIODecodeHosts,
		"Wide-EP: comma-separated decode-side pod hosts, emitted as the prefill leg's "+
			"remote_hosts. Kubernetes DNS names (e.g., 'pod-name.namespace.svc.cluster.local') "+
			"are resolved to IPs at startup; literal IPs are used as-is. "+
			"Pair with --moriio-dp-size-local.")

	fs.StringSliceVar(&opts.enableTLS, enableTLS, opts.enableTLS, "stages to enable TLS for. Supported: "+supportedTLSStageNamesStr+". Can be specified multiple times or as comma-separated values.")
	fs.StringSliceVar(&opts.tlsInsecureSkipVerify, tlsInsecureSkipVerify, opts.tlsInsecureSkipVerify, "stages to skip TLS verification for. Supported: "+supportedTLSStageNamesStr+". Can be specified multiple times or as comma-separated values.")
	fs.StringVar(&opts.inferencePool, inferencePool, opts.inferencePool, "InferencePool in namespace/name or name format (e.g., default/my-pool or my-pool). A single name implies the 'default' namespace. Can also use INFERENCE_POOL env var.")

	fs.IntVar(&opts.MaxIdleConnsPerHost, "max-idle-conns-per-host", opts.MaxIdleConnsPerHost, "max idle keep-alive connections per host for reverse proxy transports; set to at least the expected concurrency")
	fs.IntVar(&opts.PrefillMaxRetries, prefillMaxRetries, opts.PrefillMaxRetries, "max retry attempts when a prefill request fails with a 5xx error; 0 means no retries (default)")
	fs.DurationVar(&opts.PrefillRetryBackoff, prefillRetryBackoff, opts.PrefillRetryBackoff, "delay between prefill retry attempts")
	fs.StringVar(&opts.inlineConfiguration, inlineConfiguration, "", "Sidecar configuration in YAML provided as inline specification. Example `--configuration={port: 8085, model-server-port: 8203}. Inline configuration and file configuration are mutually exclusive.`")
	fs.StringVar(&opts.fileConfiguration, configurationFile, "", "Path to file which contains sidecar configuration in YAML. Example `--configuration-file=/etc/config/sidecar-config.yaml`. Inline configuration and file configuration are mutually exclusive.")
}

// validateStages checks if all stages in the slice are valid according to the supportedStages map
func validateStages(stages []string, supportedStages map[string]struct{}, flagName string) error {
	for _, stage := range stages {
		if _, ok := supportedStages[stage]; !ok {
			return fmt.Errorf("%s stages must be one of: %s", flagName, supportedTLSStageNamesStr)
		}
	}
	return nil
}

// Complete performs post-processing of parsed command-line arguments.
// It extracts YAML configuration (if provided), handles migration from deprecated flags,
// parses the InferencePool field, computes boolean TLS fields, and builds Config.DecoderURL.
// After Complete(), opts.Config is fully populated.
func (opts *Options) Complete() error {
	if err := opts.extractYAMLConfiguration(); err != nil {
		return err
	}

	// Resolve the effective model server port with flag-over-config precedence:
	//   --model-server-port flag > --vllm-port flag > model-server-port YAML > vllm-port YAML > default.
	// The deprecated --vllm-port flag must still override a YAML model-server-port.
	if (opts.isFlagSet(vllmPort) && !opts.isFlagSet(modelServerPort)) || opts.modelServerPort == "" {
		opts.modelServerPort = opts.vllmPort
	}

	// Parse inferencePool field (namespace/name or just name) into Config.
	if opts.inferencePool != "" {
		parts := strings.SplitN(opts.inferencePool, "/", 2)
		if len(parts) == 2 {
			opts.InferencePoolNamespace = parts[0]
			opts.InferencePoolName = parts[1]
		} else {
			opts.InferencePoolNamespace = "default"
			opts.InferencePoolName = parts[0]
		}
	}

	// Compute Config TLS fields from stage slices
	opts.UseTLSForPrefiller = slices.Contains(opts.enableTLS, prefillStage)
	opts.UseTLSForDecoder = slices.Contains(opts.enableTLS, decodeStage)
	opts.UseTLSForEncoder = slices.Contains(opts.enableTLS, encodeStage)
	opts.InsecureSkipVerifyForPrefiller = slices.Contains(opts.tlsInsecureSkipVerify, prefillStage)
	opts.InsecureSkipVerifyForEncoder = slices.Contains(opts.tlsInsecureSkipVerify, encodeStage)
	opts.InsecureSkipVerifyForDecoder = slices.Contains(opts.tlsInsecureSkipVerify, decodeStage)

	// Compute Config.DecoderURL from modelServerPort and decoder TLS setting
	scheme := "http"
	if opts.UseTLSForDecoder {
		scheme = schemeHTTPS
	}
	var err error
	opts.DecoderURL, err = url.Parse(scheme + "://localhost:" + opts.modelServerPort)
	if err != nil {
		return fmt.Errorf("failed to parse target URL: %w", err)
	}

	// MoRI-IO feature gate: when MoRIIOFeatureEnabled is false, reject ANY
	// --moriio-* flag at a non-default value. This keeps the feature fully
	// dormant until CI and production validation is complete. Even flags like
	// --moriio-dp-size > 1 can affect routing behavior (X-Data-Parallel-Rank
	// header) without WRITE mode, so all MoRI-IO flags must be blocked.
	if !MoRIIOFeatureEnabled && opts.hasMoRIIOFlagsSet() {
		return errors.New(
			"MoRI-IO WRITE-mode and Wide-EP features are not yet enabled in this release. " +
				"The --moriio-* flags are reserved for a future release candidate. " +
				"Please remove all --moriio-* flags, or wait for the " +
				"official feature release. See pkg/sidecar/proxy/MORIIO_README.md for details")
	}

	// WRITE mode without a routable decode pod IP makes prefill handshake with
	// itself and hang silently, so fail fast.
	if opts.MoRIIOWriteMode && opts.MoRIIODecodePodIP == "" {
		return errors.New(
			"--moriio-write-mode requires --moriio-local-pod-ip (or the POD_IP " +
				"env var) set to decode's routable pod IP")
	}

	// Concurrent dispatch needs the fields only WRITE mode synthesises.
	if opts.MoRIIOParallelDispatch && !opts.MoRIIOWriteMode {
		return errors.New("--moriio-parallel-dispatch requires --moriio-write-mode")
	}

	// Both legs share the same dp_size / dp_size_local contract; only the host
	// list differs.
	if err := validateWideEPHosts(
		"--moriio-remote-hosts", opts.MoRIIORemoteHosts,
		opts.MoRIIODPSize, opts.MoRIIODPSizeLocal); err != nil {
		return err
	}
	if err := validateWideEPHosts(
		"--moriio-decode-hosts", opts.MoRIIODecodeHosts,
		opts.MoRIIODPSize, opts.MoRIIODPSizeLocal); err != nil {
		return err
	}

	// Capture the ORIGINAL host specs before one-shot resolution rewrites the
	// resolved fields. The request-path hostResolver re-resolves these on a
	// short TTL so peer pod restarts (new IP) are eventually picked up. Literal
	// IPs stored here pass through the resolver unchanged.
	opts.MoRIIORemoteHostSpecs = append([]string(nil), opts.MoRIIORemoteHosts...)
	opts.MoRIIODecodeHostSpecs = append([]string(nil), opts.MoRIIODecodeHosts...)
	opts.MoRIIODecodePodIPSpec = opts.MoRIIODecodePodIP

	// LWS-compatible DNS resolution: resolve hostnames to IPs at startup. This
	// aligns with Kubernetes LeaderWorkerSet patterns where pod addresses are
	// DNS names (e.g., "moriio-prefill-0-0.namespace.svc"); a literal IP is
	// used as-is.
	resolvedRemote, remoteErr := resolveHostsToIPs(opts.MoRIIORemoteHosts)
	if remoteErr != nil {
		return fmt.Errorf("resolving --moriio-remote-hosts: %w", remoteErr)
	}
	opts.MoRIIORemoteHosts = resolvedRemote

	resolvedDecode, decodeErr := resolveHostsToIPs(opts.MoRIIODecodeHosts)
	if decodeErr != nil {
		return fmt.Errorf("resolving --moriio-decode-hosts: %w", decodeErr)
	}
	opts.MoRIIODecodeHosts = resolvedDecode

	// Single-host counterpart: --moriio-local-pod-ip is decode's advertised
	// remote_host on the prefill leg. Resolve it the same way so it can be an
	// LWS DNS name (a literal IP passes through unchanged).
	if opts.MoRIIODecodePodIP != "" {
		resolved, podIPErr := resolveHostsToIPs([]string{opts.MoRIIODecodePodIP})
		if podIPErr != nil {
			return fmt.Errorf("resolving --moriio-local-pod-ip: %w", podIPErr)
		}
		opts.MoRIIODecodePodIP = resolved[0]
	}

	return nil
}

// hasMoRIIOFlagsSet returns true if any --moriio-* flag is set to a non-default
// value. Used by the dormant feature gate to reject any MoRI-IO configuration
// when the feature is not yet enabled.
func (opts *Options) hasMoRIIOFlagsSet() bool {
	// Behavioral flags that affect routing or wire shape
	if opts.MoRIIOWriteMode || opts.MoRIIOParallelDispatch {
		return true
	}
	// DP-size > 1 triggers X-Data-Parallel-Rank header even without WRITE mode
	if opts.MoRIIODPSize > 1 {
		return true
	}
	// Wide-EP multi-pod configuration
	if len(opts.MoRIIORemoteHosts) > 0 || len(opts.MoRIIODecodeHosts) > 0 {
		return true
	}
	if opts.MoRIIODPSizeLocal > 0 {
		return true
	}
	return false
}

// validateWideEPHosts checks the multi-pod fan-out invariants for one host
// list: dpLocal must divide dpSize and the host count must equal the pod count
// (dpSize / dpLocal), since vLLM indexes hosts[dp_rank / dpLocal]. A misconfig
// otherwise surfaces only as a cross-pod handshake that hangs, so it fails fast.
// Lists of 0 or 1 host are the single-pod case and pass unchecked.
func validateWideEPHosts(flag string, hosts []string, dpSize, dpLocal int) error {
	if len(hosts) <= 1 {
		return nil
	}
	if dpLocal <= 0 {
		return fmt.Errorf(
			"%s has %d entries but --moriio-dp-size-local is %d; "+
				"Wide-EP multi-pod requires dp-size-local > 0 so vLLM "+
				"can compute pod_idx = dp_rank / dp_size_local",
			flag, len(hosts), dpLocal)
	}
	if dpSize%dpLocal != 0 {
		return fmt.Errorf(
			"--moriio-dp-size (%d) must be divisible by "+
				"--moriio-dp-size-local (%d) for Wide-EP multi-pod (%s)",
			dpSize, dpLocal, flag)
	}
	if dpSize/dpLocal != len(hosts) {
		return fmt.Errorf(
			"%s has %d entries but dp-size/dp-size-local = %d; the "+
				"count of hosts must match the number of pods so the "+
				"per-rank pod_idx mapping covers every DP rank",
			flag, len(hosts), dpSize/dpLocal)
	}
	return nil
}

// resolveHostsToIPs resolves DNS names (e.g., "pod-name.namespace.svc") to IPs
// at startup, preferring IPv4. A literal IP (e.g., "10.0.0.1") is used as-is.
// Resolution happens once at startup.
func resolveHostsToIPs(hosts []string) ([]string, error) {
	if len(hosts) == 0 {
		return hosts, nil
	}
	resolved := make([]string, len(hosts))
	for i, host := range hosts {
		// A literal IP is used as-is (no lookup).
		if ip := net.ParseIP(host); ip != nil {
			resolved[i] = host
			continue
		}
		// Resolve DNS name to IP (IPv4-preferred)
		ip, err := resolveSingleHost(host)
		if err != nil {
			return nil, err
		}
		resolved[i] = ip
	}
	return resolved, nil
}

// resolveSingleHost resolves one DNS name to a single IP string, preferring
// IPv4 and falling back to the first returned address. Callers must handle raw
// IP passthrough before calling this. The lookup is bounded by a context
// timeout sourced from resolveTimeoutFromEnv() (default defaultResolveTimeout),
// the same bound the request-path resolver uses, so a slow or hanging resolver
// cannot stall startup indefinitely. Shares lookupIPv4Preferred with the
// request-path TTL resolver so both apply identical bounding and
// IPv4-preference semantics.
func resolveSingleHost(host string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeoutFromEnv())
	defer cancel()
	return lookupIPv4Preferred(ctx, net.DefaultResolver.LookupIPAddr, host)
}

// Validate checks the Options for invalid or conflicting values.
// Complete must be called before Validate.
func (opts *Options) Validate() error {
	// Validate data parallel size
	if opts.DataParallelSize < 1 {
		return fmt.Errorf("--data-parallel-size must be a positive integer, got %d", opts.DataParallelSize)
	}

	port, err := strconv.Atoi(opts.Port)
	if err != nil {
		return fmt.Errorf("--port must be a valid integer, got %q", opts.Port)
	}
	if err := validatePortRange(port, opts.DataParallelSize); err != nil {
		return fmt.Errorf("--port %w", err)
	}

	portFlagName := "--" + modelServerPort
	if opts.isFlagSet(vllmPort) && !opts.isFlagSet(modelServerPort) {
		portFlagName = "--" + vllmPort
	}
	msPort, err := strconv.Atoi(opts.modelServerPort)
	if err != nil {
		return fmt.Errorf("%s must be a valid integer, got %q", portFlagName, opts.modelServerPort)
	}
	if err := validatePortRange(msPort, opts.DataParallelSize); err != nil {
		return fmt.Errorf("%s %w", portFlagName, err)
	}

	// Validate KV connector
	if _, ok := supportedKVConnectors[opts.KVConnector]; !ok {
		return fmt.Errorf("--kv-connector must be one of: %s", supportedKVConnectorNamesStr)
	}

	// Validate EC connector if provided
	if opts.ECConnector != "" {
		if _, ok := supportedECConnectors[opts.ECConnector]; !ok {
			return fmt.Errorf("--ec-connector must be one of: %s", supportedECConnectorNamesStr)
		}
	}

	// Validate TLS stages
	if err := validateStages(opts.enableTLS, supportedTLSStages, "--enable-tls"); err != nil {
		return err
	}
	if err := validateStages(opts.tlsInsecureSkipVerify, supportedTLSStages, "--tls-insecure-skip-verify"); err != nil {
		return err
	}

	// Validate inferencePool format if provided
	if opts.inferencePool != "" {
		if strings.Count(opts.inferencePool, "/") > 1 {
			return errors.New("--inference-pool must be in format 'namespace/name' or 'name', not multiple slashes")
		}
		parts := strings.Split(opts.inferencePool, "/")
		for _, part := range parts {
			if part == "" {
				return errors.New("--inference-pool cannot have empty namespace or name")
			}
		}
	}

	// Validate prefill retry configuration
	if opts.PrefillMaxRetries > 0 && opts.PrefillRetryBackoff <= 0 {
		return fmt.Errorf("--prefill-retry-backoff must be positive when --prefill-max-retries > 0, got %v", opts.PrefillRetryBackoff)
	}

	// Validate chunked decode
	if opts.DecodeChunkSize < 0 {
		return fmt.Errorf("--decode-chunk-size must be a non-negative integer (0 disables chunked decode), got %d", opts.DecodeChunkSize)
	}

	// Validate mooncake bootstrap port
	if opts.MooncakeBootstrapPort < 1 || opts.MooncakeBootstrapPort > 65535 {
		return fmt.Errorf("--mooncake-bootstrap-port must be between 1 and 65535, got %d", opts.MooncakeBootstrapPort)
	}

	// Validate P2P connector port
	if opts.P2PConnectorPort < 1 || opts.P2PConnectorPort > 65535 {
		return fmt.Errorf("--p2p-connector-port must be between 1 and 65535, got %d", opts.P2PConnectorPort)
	}
	// The injected port is offset by the target's DP rank, so the highest
	// rank's port must stay in range too.
	if opts.DataParallelSize > 1 && opts.P2PConnectorPort+opts.DataParallelSize-1 > 65535 {
		return fmt.Errorf("--p2p-connector-port %d plus data-parallel rank %d exceeds 65535",
			opts.P2PConnectorPort, opts.DataParallelSize-1)
	}

	// --enable-p2p-pull composes the OffloadingConnector P2P tier alongside NIXL
	// via MultiConnector; it is only meaningful with the NIXLv2 PD connector.
	// offloading already provides the tier natively and needs no flag.
	if opts.EnableP2PPull && opts.KVConnector != KVConnectorNIXLV2 {
		return fmt.Errorf("--enable-p2p-pull requires --kv-connector=%s (got %q)", KVConnectorNIXLV2, opts.KVConnector)
	}

	// Validate SSRF protection requirements
	if opts.EnableSSRFProtection {
		if opts.InferencePoolNamespace == "" || opts.InferencePoolName == "" {
			return errors.New("--inference-pool flag or INFERENCE_POOL environment variable is required when --enable-ssrf-protection is true")
		}
	}

	return nil
}

func validatePortRange(startPort, rangeSize int) error {
	const maxPort = math.MaxUint16

	if rangeSize <= 0 || rangeSize >= maxPort {
		return errors.New("invalid port range")
	}

	if startPort < 1 || startPort > maxPort {
		return fmt.Errorf("start port %d is out of valid range [1, %d]", startPort, maxPort)
	}

	endPort := startPort + rangeSize - 1
	if endPort > maxPort {
		return fmt.Errorf("port range [%d, %d] exceeds maximum port value", startPort, endPort)
	}

	return nil
}

// customLevelEncoder maps negative Zap levels to human-readable names that
// match the project's verbosity constants (VERBOSE=3, DEBUG=4, TRACE=5).
// Without this, controller-runtime's zap bridge emits all V(n) calls as
// "debug" in JSON output, which is misleading for V(1)–V(3) (verbose info).
func customLevelEncoder(l zapcore.Level, enc zapcore.PrimitiveArrayEncoder) {
	if l >= 0 {
		zapcore.LowercaseLevelEncoder(l, enc)
		return
	}
	switch l {
	case zapcore.Level(-1 * logutil.DEBUG): // V(4) → "debug"
		enc.AppendString("debug")
	case zapcore.Level(-1 * logutil.TRACE): // V(5) → "trace"
		enc.AppendString("trace")
	default:
		if l >= zapcore.Level(-1*logutil.VERBOSE) { // V(1)–V(3) → "info"
			enc.AppendString("info")
		} else { // V(6+) → "trace"
			enc.AppendString("trace")
		}
	}
}

// NewLogger returns a logger configured from the Options logging flags,
// with a custom level encoder that maps verbosity levels to their semantic
// names instead of always rendering V(n) as "debug".
func (opts *Options) NewLogger() logr.Logger {
	config := uberzap.NewProductionEncoderConfig()
	config.EncodeLevel = customLevelEncoder
	return zap.New(
		zap.UseFlagOptions(&opts.loggingOptions),
		zap.Encoder(zapcore.NewJSONEncoder(config)),
	)
}

// extractYAMLConfiguration extracts sidecar configuration (if provided)
// from `--configuration` and `--configuration-file` parameters
func (opts *Options) extractYAMLConfiguration() error {
	var yamlConfiguration yamlConfiguration
	var yamlData []byte
	var err error

	switch {
	case opts.inlineConfiguration != "" && opts.fileConfiguration != "":
		return fmt.Errorf("flags --%s and --%s are mutually exclusive", inlineConfiguration, configurationFile)

	case opts.inlineConfiguration != "":
		yamlData = []byte(opts.inlineConfiguration)

	case opts.fileConfiguration != "":
		yamlData, err = os.ReadFile(opts.fileConfiguration)
		if err != nil {
			return fmt.Errorf("failed to read sidecar configuration from file: %w", err)
		}
	}

	if yamlData == nil {
		return nil
	}

	// fail on unknown YAML fields
	if err := yaml.UnmarshalStrict(yamlData, &yamlConfiguration); err != nil {
		return fmt.Errorf("failed to unmarshal sidecar configuration: %w", err)
	}

	opts.mergeYAMLConfiguration(yamlConfiguration)
	return nil
}

// mergeYAMLConfiguration merges provided yamlConfiguration into Options struct,
// respecting precedence of command-line flags (i.e., YAML values are only applied if corresponding flag was not explicitly set by user)
func (opts *Options) mergeYAMLConfiguration(cfg yamlConfiguration) {
	if cfg.Port != 0 && !opts.isFlagSet(port) {
		opts.Port = strconv.Itoa(cfg.Port)
	}
	// If both keys may be present, Complete() resolves precedence: modelServerPort wins.
	if cfg.ModelServerPort != 0 && !opts.isFlagSet(modelServerPort) {
		opts.modelServerPort = strconv.Itoa(cfg.ModelServerPort)
	}
	if cfg.VLLMPort != 0 && !opts.isFlagSet(vllmPort) {
		opts.vllmPort = strconv.Itoa(cfg.VLLMPort)
	}
	if cfg.MooncakeBootstrapPort != 0 && !opts.isFlagSet(mooncakeBootstrapPortFlag) {
		opts.MooncakeBootstrapPort = cfg.MooncakeBootstrapPort
	}
	if cfg.P2PConnectorPort != 0 && !opts.isFlagSet(p2pConnectorPortFlag) {
		opts.P2PConnectorPort = cfg.P2PConnectorPort
	}
	if cfg.DataParallelSize != 0 && !opts.isFlagSet(dataParallelSize) {
		opts.DataParallelSize = cfg.DataParallelSize
	}
	if cfg.MaxIdleConnsPerHost != 0 && !opts.isFlagSet(maxIdleConnsPerHost) {
		opts.MaxIdleConnsPerHost = cfg.MaxIdleConnsPerHost
	}

	if cfg.KVConnector != "" && !opts.isFlagSet(kvConnector) {
		opts.KVConnector = cfg.KVConnector
	}
	if cfg.ECConnector != "" && !opts.isFlagSet(ecConnector) {
		opts.ECConnector = cfg.ECConnector
	}

	if cfg.EnableSSRFProtection != nil && !opts.isFlagSet(enableSSRFProtection) {
		opts.EnableSSRFProtection = *cfg.EnableSSRFProtection
	}
	if cfg.EnablePrefillerSampling != nil && !opts.isFlagSet(enablePrefillerSampling) {
		opts.EnablePrefillerSampling = *cfg.EnablePrefillerSampling
	}
	if cfg.EnableP2PPull != nil && !opts.isFlagSet(enableP2PPull) {
		opts.EnableP2PPull = *cfg.EnableP2PPull
	}

	if cfg.SecureServing != nil && !opts.isFlagSet(secureServing) {
		opts.SecureServing = *cfg.SecureServing
	}
	if cfg.CertPath != "" && !opts.isFlagSet(certPath) {
		opts.CertPath = cfg.CertPath
	}

	if len(cfg.EnableTLS) > 0 && !opts.isFlagSet(enableTLS) {
		opts.enableTLS = cfg.EnableTLS
	}
	if len(cfg.TLSInsecureSkipVerify) > 0 && !opts.isFlagSet(tlsInsecureSkipVerify) {
		opts.tlsInsecureSkipVerify = cfg.TLSInsecureSkipVerify
	}

	if cfg.InferencePool != "" && !opts.isFlagSet(inferencePool) {
		opts.inferencePool = cfg.InferencePool
	}
	if cfg.PoolGroup != "" && !opts.isFlagSet(poolGroup) {
		opts.PoolGroup = cfg.PoolGroup
	}
	if cfg.PrefillMaxRetries != nil && !opts.isFlagSet(prefillMaxRetries) {
		opts.PrefillMaxRetries = *cfg.PrefillMaxRetries
	}
	if cfg.PrefillRetryBackoff != "" && !opts.isFlagSet(prefillRetryBackoff) {
		d, err := time.ParseDuration(cfg.PrefillRetryBackoff)
		if err != nil {
			fmt.Fprintf(os.Stderr, "WARNING: ignoring invalid %s value %q: %v; using default %v\n",
				prefillRetryBackoff, cfg.PrefillRetryBackoff, err, opts.PrefillRetryBackoff)
		} else {
			opts.PrefillRetryBackoff = d
		}
	}
	if cfg.DecodeChunkSize != 0 && !opts.isFlagSet(decodeChunkSize) {
		opts.DecodeChunkSize = cfg.DecodeChunkSize
	}
	if cfg.MetricsPort != 0 && !opts.isFlagSet(metricsPort) {
		opts.MetricsPort = cfg.MetricsPort
	}
	if cfg.Tracing != nil && !opts.isFlagSet(tracingFlag) {
		opts.Tracing = *cfg.Tracing
	}
}

// isFlagSet returns true if flag was set by user
func (opts *Options) isFlagSet(parameter string) bool {
	if opts.pflagSet != nil {
		flag := opts.pflagSet.Lookup(parameter)
		if flag != nil && flag.Changed {
			return true
		}
	}
	return false
}
