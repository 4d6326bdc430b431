#!/usr/bin/env bash
# etcd-restore-agent.sh PLAN_URL STATUS_URL
#
# The node-level half of an etcd restore, run on each control-plane node (SSM Run Command, a pinned pod,
# or locally beside the static-pod supervisor). It needs nothing from the Kubernetes API, which is down
# while etcd is stopped: it polls its plan through a presigned GET URL, does the phase the plan names, and
# writes its status through a presigned PUT URL. Each phase is idempotent, so a re-run is safe.
#
# The URLs roll: a presigned URL dies with the session that signed it, at most an hour later (role
# chaining), so every plan the state machine writes names a freshly signed snapshot URL and the plan and
# status URLs to use from then on (planUrl, statusUrl); the agent switches to them after each plan it
# reads. The URLs it is started with serve only until its first plan read.
#
# Needs bash >= 4.3, coreutils and curl; no jq, no eval. The plan is `key=value` lines with percent-encoded
# values (see lambdas/core/restore/restore-plan.ts); the status is JSON built here. Presigned URLs carry a
# signature: they never reach a command line, the log or the status.
#
# Phases (each reports working, then done or failed). After a failure the agent keeps reading its plan and
# runs the rollback (or abort) that the state machine answers with, then exits 0; it exits 1 when the
# rollback fails, when no answer comes before its plan URL expires, or when it is stopped by a signal:
#   prepare          free space >= minimumFreeBytes beside the data dir; the restore tool and its version
#   stop-apiserver   park kube-apiserver's static-pod manifest; wait until its processes have exited (when
#                    pgrep sees them) and its port (member.apiServerReadyUrl's) is closed. The state machine
#                    moves on to stop only when every node's API server has stopped, so that no API server
#                    still serves while another node's etcd is stopping
#   stop             park etcd's static-pod manifest (kube-apiserver's must be parked already); wait until
#                    etcd's port closes and its database lock is released
#   restore          download, check size and sha256 (content == trailer == plan), restore into
#                    <dataDir>.restore-<id>, keep the old dir as <dataDir>.pre-restore-<id>, swap, mark
#                    <dataDir>.restored-<id>; where the data dir is a mount point, the same names are
#                    inside it (<dataDir>/restore-<id>, ...) and the swap moves its member dir
#   start            etcd's manifest back; wait until it answers healthy: at the plan's member.healthUrl, else
#                    where etcd's manifest serves /health (see resolve_etcd_health)
#   start-apiserver  kube-apiserver's manifest back; wait until member.apiServerReadyUrl answers 200 `ok`
#                    (when the plan has one; a loopback https URL is verified for the name `kubernetes`,
#                    see resolve_api_tls); then restart each of member.restartManifests that is present
#                    (kube-scheduler, kube-controller-manager), so that nothing acts on a cache of the state
#                    before the restore: park its manifest, wait until its process has exited, move it back
#   rollback         stop both, put the pre-restore dir back (the restored one goes to <dataDir>.failed-<id>),
#                    start etcd, wait for health, start kube-apiserver; a restart manifest that an
#                    interrupted start-apiserver left parked goes back too; then report and exit 0 (no
#                    plan follows a rollback)
#   finish, abort    report and exit 0; abort changes nothing; finish says when no API readiness check ran
#
# Environment (for tests; defaults suit a real node):
#   ETCD_RESTORE_AGENT_POLL_SECONDS       pause between plan reads and health probes (1)
#   ETCD_RESTORE_AGENT_HEARTBEAT_SECONDS  re-send an unchanged status this often (30)
#   ETCD_RESTORE_AGENT_PROGRESS_SECONDS   report how far the snapshot's download got this often (10)
#   ETCD_RESTORE_AGENT_PLAN_WAIT_SECONDS  give up when the plan cannot be read for this long (600)
#   ETCD_RESTORE_AGENT_RESTART_GRACE_SECONDS
#                                         how long a parked restart manifest stays out when the agent cannot
#                                         see the component's process (no pgrep, or no host PID namespace):
#                                         the kubelet's sync period (20)
#   ETCD_RESTORE_AGENT_RUNS_AS_POD        1 when the pod executor runs the agent (set in its pod spec): the
#                                         kubelet may stop it before this node's API server answers ready

set -u -o pipefail
export LC_ALL=C
umask 077

readonly plan_format=1
readonly log_keep=20
readonly max_line=400

poll_seconds=${ETCD_RESTORE_AGENT_POLL_SECONDS:-1}
heartbeat_seconds=${ETCD_RESTORE_AGENT_HEARTBEAT_SECONDS:-30}
progress_seconds=${ETCD_RESTORE_AGENT_PROGRESS_SECONDS:-10}
plan_wait_seconds=${ETCD_RESTORE_AGENT_PLAN_WAIT_SECONDS:-600}
restart_grace_seconds=${ETCD_RESTORE_AGENT_RESTART_GRACE_SECONDS:-20}
runs_as_pod=${ETCD_RESTORE_AGENT_RUNS_AS_POD:-0}

# kubeadm's cluster CA, which verifies kube-apiserver's serving certificate when the plan names no CA file.
readonly kubeadm_ca_file=/etc/kubernetes/pki/ca.crt

plan_url=""
status_url=""
snapshot_url=""
tool_url=""
# URLs that a plan replaced: still withheld from the log.
retired_urls=()
# Set by park_and_wait_for_exit.
parked_pids=()
still_running_pid=""
work_dir=""
tool_dir=""

declare -A plan=()
restore_id=""
member_name=""
phase="none"
state="working"
message="starting"
free_bytes=""
old_data_dir=""
tool_version=""
# "ready" or "not checked", from start-apiserver on: the success notice says when no readiness check ran.
api_readiness=""
# How the restore tool treated the plan's revision bump, for the restore phase's report.
revision_note=""
log_lines=()
status_dirty=0
last_put=0
json_out=""
# The pids of nap's sleep and of a snapshot download in the background, stopped on exit.
nap_pid=""
download_pid=""
# Set by put_back_parked_restarts: the components whose manifests it moved back.
put_back=()
# Set by await_answer while a failed agent waits for its rollback; by on_signal when it is being stopped.
awaiting_answer=0
stopping=0

# ---------------------------------------------------------------------------------------------------------
# Logging, redaction and the status document

# Withholds anything that could carry a signature: every presigned URL held verbatim, then any URL's query.
redact() {
  local line=$1 url
  for url in "$plan_url" "$status_url" "$snapshot_url" "$tool_url" ${retired_urls[@]+"${retired_urls[@]}"}; do
    [[ -n $url ]] && line=${line//"$url"/"<presigned URL>"}
  done
  while [[ $line =~ (https?://[^?[:space:]\"]*)\?[^[:space:]\"]* ]]; do
    line=${line//"${BASH_REMATCH[0]}"/"${BASH_REMATCH[1]} <query withheld>"}
  done
  if [[ $line == *[Ss]ignature=* || $line == *X-Amz-* ]]; then
    line="<line withheld: it contained request credentials>"
  fi
  printf '%s' "$line"
}

log() {
  local line
  line="$(date -u +%H:%M:%S) $*"
  line=$(redact "$line")
  line=${line//$'\n'/ }
  line=${line:0:$max_line}
  printf '%s\n' "$line" >&2
  log_lines+=("$line")
  if ((${#log_lines[@]} > log_keep)); then
    log_lines=("${log_lines[@]:${#log_lines[@]}-log_keep}")
  fi
  status_dirty=1
}

# Sets json_out to the JSON string literal for $1: quotes, backslashes and control characters escaped.
json_escape() {
  local s=$1 bs=\\ q='"' out="" c i code
  s=${s//"$bs"/"$bs$bs"}
  s=${s//"$q"/"$bs$q"}
  s=${s//$'\n'/"${bs}n"}
  s=${s//$'\r'/"${bs}r"}
  s=${s//$'\t'/"${bs}t"}
  if [[ $s == *[$'\001'-$'\037']* ]]; then
    for ((i = 0; i < ${#s}; i++)); do
      c=${s:i:1}
      if [[ $c == [$'\001'-$'\037'] ]]; then
        printf -v code '%d' "'$c"
        printf -v c '\\u%04x' "$code"
      fi
      out+=$c
    done
    s=$out
  fi
  json_out="\"$s\""
}

status_json() {
  local body="{" line logs="" sep=""
  json_escape "$restore_id" && body+="\"restoreId\":$json_out"
  json_escape "$member_name" && body+=",\"member\":$json_out"
  json_escape "$phase" && body+=",\"phase\":$json_out"
  json_escape "$state" && body+=",\"state\":$json_out"
  json_escape "$(redact "$message")" && body+=",\"message\":$json_out"
  [[ -n $free_bytes ]] && body+=",\"freeBytes\":$free_bytes"
  [[ -n $old_data_dir ]] && json_escape "$old_data_dir" && body+=",\"oldDataDir\":$json_out"
  [[ -n $tool_version ]] && json_escape "$tool_version" && body+=",\"toolVersion\":$json_out"
  [[ -n $api_readiness ]] && json_escape "$api_readiness" && body+=",\"apiReadiness\":$json_out"
  body+=",\"updatedAt\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\""
  for line in ${log_lines[@]+"${log_lines[@]}"}; do
    json_escape "$line"
    logs+="$sep$json_out"
    sep=","
  done
  body+=",\"log\":[$logs]}"
  printf '%s\n' "$body"
}

# ---------------------------------------------------------------------------------------------------------
# Talking to S3 through presigned URLs

# curl_url URL CURL_ARGS...: the URL reaches curl through a config on stdin, never through argv (ps).
curl_url() {
  local url=$1
  shift
  curl_config_line "$url" | curl -K - --silent --show-error --globoff "$@"
}

# curl_config_line URL: the curl config line naming URL, its backslashes and quotes escaped.
curl_config_line() {
  local url=$1 bs=\\ q='"'
  url=${url//"$bs"/"$bs$bs"}
  printf 'url = "%s"\n' "${url//"$q"/"$bs$q"}"
}

# nap SECONDS: a sleep that a signal interrupts. bash runs a trap only once the foreground command ends,
# and the kubelet's stop of an agent pod must reach on_signal within its grace period.
nap() {
  sleep "$1" >/dev/null 2>&1 &
  nap_pid=$!
  wait "$nap_pid" || true
}

# put_status [ATTEMPTS]: a failed PUT is not fatal: the main loop sends the status again on its next turn,
# and the state machine has its own timeout. The last status before the agent exits gets more attempts.
put_status() {
  local attempts=${1:-2} code attempt
  status_json >"$work_dir/status.json"
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    code=$(curl_url "$status_url" --max-time 30 --connect-timeout 10 --upload-file "$work_dir/status.json" \
      --header "Content-Type: application/json" --output /dev/null --write-out '%{http_code}' \
      2>"$work_dir/curl.err")
    if [[ $code == 2[0-9][0-9] ]]; then
      status_dirty=0
      last_put=$SECONDS
      return 0
    fi
    ((attempt < attempts)) && nap "$poll_seconds"
  done
  printf '%s\n' "$(redact "$(date -u +%H:%M:%S) status PUT failed: HTTP $code $(head -c 200 "$work_dir/curl.err")")" >&2
  status_dirty=1
  return 1
}

# Reports the failure, then stays for the state machine's answer to it (await_answer): the node whose phase
# failed is the one that needs the rollback most. A failure before any plan was read, in the rollback
# itself, or of an agent being stopped ends the agent.
fail() {
  local reason=${1//$'\n'/ }
  if ((awaiting_answer)); then
    # The status keeps the failure that the state machine is answering.
    log "stopped waiting for the rollback: $reason"
    put_status 2 || true
    exit 1
  fi
  state="failed"
  message=${reason:0:$max_line}
  log "FAILED: $reason"
  put_status 10 || true
  if ((stopping)) || [[ $phase == none || $phase == rollback ]]; then exit 1; fi
  await_answer
}

# After a failure: polls the plan until it names rollback (or abort, or finish), runs that phase and exits.
# Called from deep inside the failed phase, so it never returns. Without an answer the wait ends when the
# plan URL, renewed only by a plan write, is refused an hour after the last one (agent-url-lifetimes.ts).
await_answer() {
  awaiting_answer=1
  log "waiting for the state machine's rollback or abort"
  while :; do
    if ((status_dirty || SECONDS - last_put >= heartbeat_seconds)); then put_status || true; fi
    nap "$poll_seconds"
    read_plan
    adopt_plan
    case ${plan[phase]} in
    rollback | abort | finish)
      awaiting_answer=0
      run_phase "${plan[phase]}"
      ((status_dirty)) && put_status 10
      exit 0
      ;;
    esac
  done
}

on_signal() {
  trap - TERM INT
  # Once the restored API server serves, the kubelet kills agent pods that it never knew: expected after the
  # agent reported its phase done, which must then stand (the state machine counts an agent that vanished
  # after reporting success as done). finish and abort change nothing, so there is nothing to report either.
  if [[ $state == "done" || $phase == finish || $phase == abort ]]; then
    exit 0
  fi
  # The kubelet kills the pod because the restored API serves, so the kill can come between two of the
  # agent's readiness asks, before it saw the answer: ask once more (the grace period allows for it).
  local not_restarted=0
  if [[ $phase == start-apiserver && $api_readiness != ready && -n ${api_request_url:-} ]] && api_ready; then
    api_readiness="ready"
    not_restarted=1
  fi
  # The restore stands, and the phase is reported done with what was interrupted (any manifest still
  # parked goes back first: the kubelet grants a grace period for this), when the kill came
  # - while the scheduler and controller manager were being restarted, after the API answered ready;
  # - in a pod, with kube-apiserver's manifest back but before this node's API answered ready: the kubelet
  #   stops the agent once any API server of the restored cluster serves — another node's too, when
  #   kubelets reach the API through a shared endpoint. etcd passed the barrier's check already: failing
  #   here would roll a good restore back.
  if [[ $phase == start-apiserver ]] && [[ $api_readiness == ready || ($runs_as_pod == 1 && -n $apiserver_manifest && -e $manifest_dir/$apiserver_manifest) ]]; then
    put_back_parked_restarts
    state="done"
    if [[ $api_readiness != ready ]]; then
      message="kube-apiserver's manifest is back; the agent was stopped by SIG$1 before ${ready_url:-the API} answered ready (the kubelet stops agent pods once an API server of the restored cluster serves, maybe another node's): WARNING: this node's API readiness was not confirmed"
      ((${#restart_manifests[@]})) && message+="; ${restart_manifests[*]} not restarted: restart them by hand"
    elif ((not_restarted)); then
      message="kube-apiserver started; the API answered ready at $ready_url when the agent was stopped by SIG$1 (the kubelet, once the restored API serves), before it restarted anything"
      ((${#restart_manifests[@]})) && message+="; WARNING: ${restart_manifests[*]} not restarted: restart them by hand"
    else
      message="kube-apiserver started; the API answered ready at $ready_url; the agent was stopped by SIG$1 (the kubelet, once the restored API serves) while restarting the scheduler and controller manager"
    fi
    ((${#put_back[@]})) && message+="; put back ${put_back[*]} without waiting for it to stop"
    log "$message"
    put_status 3 || true
    exit 0
  fi
  stopping=1
  fail "agent stopped by SIG$1 during phase $phase"
}

cleanup() {
  if [[ -n $nap_pid ]]; then kill "$nap_pid" 2>/dev/null || true; fi
  if [[ -n $download_pid ]]; then kill "$download_pid" 2>/dev/null || true; fi
  if [[ -n $work_dir ]]; then rm -rf -- "$work_dir"; fi
  if [[ -n $tool_dir ]]; then rm -rf -- "$tool_dir"; fi
}

# ---------------------------------------------------------------------------------------------------------
# The plan

# Every key the agent knows; keys a newer writer may add are ignored.
declare -A known_keys=()
for key in restoreId cluster phase snapshot.url snapshot.sha256 snapshot.bytes snapshot.revision member.name \
  member.dataDir member.manifestDir member.parkedManifestDir member.etcdManifest member.apiServerManifest \
  member.clientUrl member.peerUrl member.healthUrl member.healthTls.caFile member.healthTls.certFile \
  member.healthTls.keyFile member.apiServerReadyUrl member.checkApiReadiness member.apiServerCaFile member.restartManifests \
  initialCluster initialClusterToken restoreTool bumpRevision markCompacted revisionBumpOptional etcdctlPath etcdutlPath \
  tool.url tool.sha256 minimumFreeBytes stopTimeoutSeconds startTimeoutSeconds planUrl statusUrl; do
  known_keys[$key]=1
done
unset key
readonly required_keys="restoreId cluster phase snapshot.url snapshot.sha256 snapshot.bytes snapshot.revision
  member.name member.dataDir member.manifestDir member.parkedManifestDir member.etcdManifest member.clientUrl
  member.peerUrl initialCluster initialClusterToken restoreTool minimumFreeBytes"

# Percent-decodes $2 into the variable named $1 (a fixed name in this script), after checking its alphabet.
decode_into() {
  local encoded=$2 esc='\x'
  [[ $encoded =~ ^([A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})*$ ]] || return 1
  [[ $encoded == *%00* ]] && return 1
  printf -v "$1" '%b' "${encoded//"%"/"$esc"}"
}

# Reads the plan file $1 into the associative array `plan`; prints why on failure.
parse_plan_file() {
  local file=$1 line key value number=0 format="" ended=0
  plan=()
  while IFS= read -r line || [[ -n $line ]]; do
    number=$((number + 1))
    [[ -z $line || $line == "#"* ]] && continue
    if ((ended)); then
      echo "plan line $number follows the end line"
      return 1
    fi
    if [[ ! $line =~ ^([A-Za-z][A-Za-z0-9.]*)=(.*)$ ]]; then
      echo "plan line $number is not key=value"
      return 1
    fi
    key=${BASH_REMATCH[1]}
    if ! decode_into value "${BASH_REMATCH[2]}"; then
      echo "plan value of $key is not percent-encoded"
      return 1
    fi
    case $key in
    format) format=$value ;;
    end) ended=1 ;;
    *)
      [[ -n ${known_keys[$key]+set} ]] || continue
      if [[ -n ${plan[$key]+set} ]]; then
        echo "plan key $key appears twice"
        return 1
      fi
      plan[$key]=$value
      ;;
    esac
  done <"$file"
  if [[ $format != "$plan_format" ]]; then
    echo "plan format '${format:0:20}' is not $plan_format"
    return 1
  fi
  if ((!ended)); then
    echo "plan has no end line: it was cut short"
    return 1
  fi
  check_plan
}

# No leading zeros: bash arithmetic would read 010 as octal.
is_count() { [[ $1 =~ ^(0|[1-9][0-9]{0,15})$ ]]; }
is_path() { [[ $1 == /?* && $1 != */ && $1 != *$'\n'* && $1 != */./* && $1 != */../* && $1 != */. && $1 != */.. && $1 != *//* ]]; }
is_file_name() { [[ $1 =~ ^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$ ]]; }
is_url() { [[ $1 =~ ^https?://[^[:space:]]+$ ]]; }

# The same rules as the plan schema, checked again: the agent trusts nothing it downloads.
check_plan() {
  local key
  for key in $required_keys; do
    if [[ -z ${plan[$key]:-} ]]; then
      echo "plan has no $key"
      return 1
    fi
  done
  [[ ${plan[restoreId]} =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ ]] || { echo "plan restoreId is invalid" && return 1; }
  case ${plan[phase]} in
  prepare | stop-apiserver | stop | restore | start | start-apiserver | rollback | finish | abort) ;;
  *) echo "plan phase '${plan[phase]:0:40}' is unknown" && return 1 ;;
  esac
  case ${plan[restoreTool]} in
  etcdctl | etcdutl) ;;
  *) echo "plan restoreTool '${plan[restoreTool]:0:40}' is unknown" && return 1 ;;
  esac
  [[ ${plan[snapshot.sha256]} =~ ^[0-9a-f]{64}$ ]] || { echo "plan snapshot.sha256 is not 64 hex digits" && return 1; }
  for key in snapshot.bytes snapshot.revision minimumFreeBytes bumpRevision stopTimeoutSeconds startTimeoutSeconds; do
    if [[ -n ${plan[$key]+set} ]] && ! is_count "${plan[$key]}"; then
      echo "plan $key is not a whole number"
      return 1
    fi
  done
  for key in member.dataDir member.manifestDir member.parkedManifestDir etcdctlPath etcdutlPath \
    member.healthTls.caFile member.healthTls.certFile member.healthTls.keyFile member.apiServerCaFile; do
    if [[ -n ${plan[$key]+set} ]] && ! is_path "${plan[$key]}"; then
      echo "plan $key is not a normalized absolute path"
      return 1
    fi
  done
  for key in member.etcdManifest member.apiServerManifest; do
    if [[ -n ${plan[$key]+set} ]] && ! is_file_name "${plan[$key]}"; then
      echo "plan $key is not a plain file name"
      return 1
    fi
  done
  for key in snapshot.url tool.url planUrl statusUrl member.clientUrl member.peerUrl member.healthUrl \
    member.apiServerReadyUrl; do
    if [[ -n ${plan[$key]+set} ]] && ! is_url "${plan[$key]}"; then
      echo "plan $key is not an http(s) URL"
      return 1
    fi
  done
  if [[ -n ${plan[tool.url]+set} ]]; then
    [[ ${plan[tool.sha256]:-} =~ ^[0-9a-f]{64}$ ]] || { echo "plan tool.sha256 is not 64 hex digits" && return 1; }
    if [[ -n ${plan[etcdctlPath]:-}${plan[etcdutlPath]:-} ]]; then
      echo "plan names both a staged restore tool and a tool path on the node"
      return 1
    fi
  fi
  for key in markCompacted revisionBumpOptional member.checkApiReadiness; do
    if [[ -n ${plan[$key]+set} && ${plan[$key]} != true && ${plan[$key]} != false ]]; then
      echo "plan $key is neither true nor false"
      return 1
    fi
  done
  if [[ ${plan[restoreTool]} == etcdctl && -n ${plan[bumpRevision]:-} && ${plan[revisionBumpOptional]:-} != true ]]; then
    echo "etcdctl snapshot restore has --bump-revision only in some 3.4 releases: the plan must name etcdutl, or make the bump optional"
    return 1
  fi
  if [[ ${plan[member.manifestDir]} == "${plan[member.parkedManifestDir]}" ]]; then
    echo "plan member.parkedManifestDir must differ from member.manifestDir"
    return 1
  fi
  check_restart_manifests
}

# member.restartManifests: comma-separated plain file names, none of them etcd's or kube-apiserver's.
check_restart_manifests() {
  local list=${plan[member.restartManifests]:-} name seen=","
  [[ -z $list ]] && return 0
  if [[ ! $list =~ ^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}(,[A-Za-z0-9_-][A-Za-z0-9._-]{0,254})*$ ]]; then
    echo "plan member.restartManifests is not a comma-separated list of plain file names"
    return 1
  fi
  for name in ${list//,/ }; do
    if [[ $name == "${plan[member.etcdManifest]}" || $name == "${plan[member.apiServerManifest]:-}" ]]; then
      echo "plan member.restartManifests names $name, which the other phases stop and start"
      return 1
    fi
    if [[ $seen == *",$name,"* ]]; then
      echo "plan member.restartManifests names $name twice"
      return 1
    fi
    seen+="$name,"
  done
  return 0
}

# Fetches and parses the plan, retrying transport failures for up to plan_wait_seconds.
read_plan() {
  local code deadline=$((SECONDS + plan_wait_seconds)) pause=1
  while :; do
    code=$(curl_url "$plan_url" --max-time 30 --connect-timeout 10 --output "$work_dir/plan" \
      --write-out '%{http_code}' 2>"$work_dir/curl.err")
    # A plan without its end line was read while being written (a store without atomic PUTs): read again.
    if [[ $code == 200 && $(tail -n 1 -- "$work_dir/plan") == "end=1" ]]; then
      # Not in a command substitution: the parser fills `plan` in this shell; it prints only its complaint.
      parse_plan_file "$work_dir/plan" >"$work_dir/plan.problem" && return 0
      fail "$(head -c 300 "$work_dir/plan.problem")"
    fi
    if [[ $code == 403 ]]; then
      fail "the plan URL was refused (HTTP 403): it has expired (no plan renewed it: has the restore ended?) or was not signed for the plan object"
    fi
    if ((SECONDS >= deadline)); then
      [[ $code == 200 ]] && fail "the plan kept arriving without its end line for ${plan_wait_seconds} s"
      fail "could not read the plan for ${plan_wait_seconds} s: HTTP $code $(head -c 200 "$work_dir/curl.err")"
    fi
    printf '%s\n' "$(redact "$(date -u +%H:%M:%S) plan read failed: HTTP $code $(head -c 200 "$work_dir/curl.err")")" >&2
    if [[ $code == 200 ]]; then
      nap "$poll_seconds"
    else
      nap "$pause"
      ((pause < 8)) && pause=$((pause * 2))
    fi
  done
}

# Replaces the URL in the variable named $1 (a fixed name in this script) with $2, when $2 is another URL;
# the old one stays withheld from the log. Returns 1 when nothing changed.
switch_url() {
  local name=$1 url=$2
  [[ -n $url && $url != "${!name}" ]] || return 1
  [[ -n ${!name} ]] && retired_urls+=("${!name}")
  printf -v "$name" '%s' "$url"
}

# Takes the plan's values into the names the phases use, and refuses a plan that changed identity.
adopt_plan() {
  if [[ -n $restore_id && (${plan[restoreId]} != "$restore_id" || ${plan[member.name]} != "$member_name") ]]; then
    fail "the plan changed from restore $restore_id member $member_name to another restore or member"
  fi
  restore_id=${plan[restoreId]}
  member_name=${plan[member.name]}
  switch_url snapshot_url "${plan[snapshot.url]}" || true
  switch_url tool_url "${plan[tool.url]:-}" || true
  # The plan's URLs were signed when it was written; the ones in use expire (see the header).
  local renewed=0
  switch_url plan_url "${plan[planUrl]:-}" && renewed=1
  switch_url status_url "${plan[statusUrl]:-}" && renewed=1
  ((renewed)) && log "took the renewed plan and status URLs from the plan"
  data_dir=${plan[member.dataDir]}
  manifest_dir=${plan[member.manifestDir]}
  parked_dir=${plan[member.parkedManifestDir]}
  etcd_manifest=${plan[member.etcdManifest]}
  apiserver_manifest=${plan[member.apiServerManifest]:-}
  client_url=${plan[member.clientUrl]}
  # Chosen by resolve_etcd_health when etcd's manifest is back; until then, what a message can name.
  health_url=${plan[member.healthUrl]:-${client_url%/}/health}
  # The plan bounds them by its phase's deadline (restore-timeouts.ts agentWaitSeconds); these are the defaults.
  stop_timeout=${plan[stopTimeoutSeconds]:-120}
  start_timeout=${plan[startTimeoutSeconds]:-300}
  resolve_ready_url
  api_ca_file=${plan[member.apiServerCaFile]:-}
  restart_manifests=()
  # The list was checked to be comma-separated file names: no space, glob character or empty item.
  [[ -n ${plan[member.restartManifests]:-} ]] && IFS=, read -r -a restart_manifests <<<"${plan[member.restartManifests]}"
  # What the swap renames, and where the restore's own files go: a rename cannot cross filesystems. Most
  # nodes: the data dir itself, with the rest beside it (<dataDir>.restore-<id>, ...). A data dir that is
  # a volume of its own (a mount point, which cannot be renamed, and whose siblings are on another
  # filesystem): its member dir, the only thing etcd keeps there, with the rest inside it
  # (<dataDir>/restore-<id>, ...; etcd logs a warning for each such entry and ignores it).
  local stem
  if is_mount_point "$data_dir"; then
    work_home=$data_dir
    stem=$data_dir/
    member_suffix=/member
  else
    work_home=$(dirname -- "$data_dir")
    stem=$data_dir.
    member_suffix=""
  fi
  live_dir=$data_dir$member_suffix
  # The restore tool's --data-dir; new_dir is what moves into live_dir's place.
  restore_root=${stem}restore-$restore_id
  new_dir=$restore_root$member_suffix
  # A data dir etcd could run on, reported as the old one kept; pre_restore_dir is what moved there.
  pre_restore_root=${stem}pre-restore-$restore_id
  pre_restore_dir=$pre_restore_root$member_suffix
  failed_root=${stem}failed-$restore_id
  restored_marker=${stem}restored-$restore_id
  download=${stem}download-$restore_id.db
  # Beside (or in) the data dir rather than in $work_dir: /tmp is often mounted noexec on hardened nodes.
  tool_dir=${stem}tool-$restore_id
}

# ---------------------------------------------------------------------------------------------------------
# Node helpers

available_bytes() {
  local _fs _size _used available
  { read -r _ && read -r _fs _size _used available _; } < <(df -Pk -- "$1" 2>/dev/null) || return 1
  is_count "$available" || return 1
  printf '%s' $((available * 1024))
}

# Whether DIR is a mount point. stat's device number is the fallback where util-linux's mountpoint is
# missing; it cannot see a bind mount within one filesystem.
is_mount_point() {
  [[ -d $1 ]] || return 1
  if command -v mountpoint >/dev/null; then
    mountpoint -q -- "$1"
  else
    [[ $(stat -c %d -- "$1") != "$(stat -c %d -- "$1/..")" ]]
  fi
}

# move_dir FROM TO: a rename, creating TO's parent (a dir inside a data dir that is a volume).
move_dir() {
  mkdir -p -- "$(dirname -- "$2")" && mv -T -- "$1" "$2"
}

# port_open URL DEFAULT_PORT: whether anything accepts a TCP connection on the URL's host and port.
port_open() {
  local url=$1 hostport host port
  [[ $url =~ ^https?://([^/?#]+) ]] || return 1
  hostport=${BASH_REMATCH[1]}
  if [[ $hostport =~ ^\[(.*)\]:([0-9]+)$ || $hostport =~ ^([^:]+):([0-9]+)$ ]]; then
    host=${BASH_REMATCH[1]}
    port=${BASH_REMATCH[2]}
  else
    host=${hostport#[}
    host=${host%]}
    port=$2
  fi
  # shellcheck disable=SC2016 # host and port reach the inner shell as arguments, not as code
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# A member without quorum still accepts connections, so an HTTP health failure alone does not prove that
# etcd has stopped: its client port must be closed.
etcd_port_open() { port_open "$client_url" 2379; }

# Prints where manifest $1 is: in the manifest dir, else where it is parked (which may not exist either).
manifest_file() {
  if [[ -e $manifest_dir/$1 ]]; then
    printf '%s' "$manifest_dir/$1"
  else
    printf '%s' "$parked_dir/$1"
  fi
}

etcd_manifest_file() { manifest_file "$etcd_manifest"; }

# Chooses where kube-apiserver's readiness is asked: sets ready_url (empty: not asked) and ready_source,
# or ready_skipped (why not). The plan's apiServerReadyUrl wins; otherwise kube-apiserver's own manifest
# decides: its secure port (kubeadm always writes --secure-port) on its bind address, loopback when it
# binds every address. /readyz is public (system:public-info-viewer) unless anonymous requests are off,
# and then an unauthenticated agent cannot ask: the restore goes on without the check and says so, rather
# than fail a good restore at its last barrier.
resolve_ready_url() {
  local manifest port bind host
  ready_url=${plan[member.apiServerReadyUrl]:-}
  ready_source="the plan's apiServerReadyUrl"
  ready_skipped=""
  [[ -n $ready_url || -z $apiserver_manifest ]] && return 0
  if [[ ${plan[member.checkApiReadiness]:-} == false ]]; then
    ready_skipped="the target's restore.apiServerReadyUrl is none"
    return 0
  fi
  manifest=$(manifest_file "$apiserver_manifest")
  if [[ ! -r $manifest ]]; then
    ready_skipped="no readable $apiserver_manifest to read kube-apiserver's port from"
  elif ! port=$(manifest_flag secure-port "$manifest") || [[ ! $port =~ ^[0-9]{1,5}$ ]]; then
    ready_skipped="kube-apiserver's manifest sets no --secure-port; set restore.apiServerReadyUrl"
  elif [[ $(manifest_flag anonymous-auth "$manifest") == false ]]; then
    ready_skipped="kube-apiserver runs with --anonymous-auth=false, so /readyz refuses the agent, which has no credentials; set restore.apiServerReadyUrl to none to say so"
  else
    bind=$(manifest_flag bind-address "$manifest") || bind=""
    case $bind in
      "" | 0.0.0.0 | :: | "[::]") host=127.0.0.1 ;;
      *:*) host="[$bind]" ;;
      *) host=$bind ;;
    esac
    ready_url="https://$host:$port/readyz"
    ready_source="kube-apiserver's manifest (--secure-port=$port)"
  fi
}

# Prints the value of flag --$1 in etcd's static-pod manifest $2, written `--flag=value` as one command-line
# item per YAML list entry or JSON string (kubeadm's form); returns 1 when the manifest does not set it.
manifest_flag() {
  local line pattern="--$1=([^\"'[:space:]]+)"
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ $pattern ]]; then
      printf '%s' "${BASH_REMATCH[1]}"
      return 0
    fi
  done <"$2"
  return 1
}

# Chooses where etcd's health is asked and with which TLS files: sets health_url, health_tls and
# health_source. The plan's healthUrl (and healthTls) win. Otherwise etcd's own manifest decides: kubeadm's
# etcd serves /health without TLS on --listen-metrics-urls (http://127.0.0.1:2381), whereas its client URL
# requires a client certificate signed by etcd's CA, which etcd's own serving certificate is (kubeadm
# issues it for client authentication too). Without either, <clientUrl>/health as it is.
resolve_etcd_health() {
  local manifest urls url ca cert key
  manifest=$(etcd_manifest_file)
  [[ -r $manifest ]] || manifest=""
  health_tls=()
  health_url=${client_url%/}/health
  health_source="the plan's clientUrl"
  if [[ -n ${plan[member.healthUrl]:-} ]]; then
    health_url=${plan[member.healthUrl]}
    health_source="the plan's healthUrl"
  elif [[ -n $manifest ]] && url=$(manifest_flag listen-metrics-urls "$manifest"); then
    IFS=, read -r -a urls <<<"$url"
    for url in ${urls[@]+"${urls[@]}"}; do
      if [[ $url == http://* ]] && is_url "$url"; then
        health_url=${url%/}/health
        health_source="etcd's --listen-metrics-urls, which needs no TLS"
        break
      fi
    done
  fi
  [[ $health_url == https://* ]] || return 0
  if [[ -n ${plan[member.healthTls.caFile]:-} ]]; then
    health_tls=(--cacert "${plan[member.healthTls.caFile]}" --cert "${plan[member.healthTls.certFile]:-}"
      --key "${plan[member.healthTls.keyFile]:-}")
    health_source+=", with the plan's healthTls"
  elif [[ -n $manifest ]] && ca=$(manifest_flag trusted-ca-file "$manifest") &&
    cert=$(manifest_flag cert-file "$manifest") && key=$(manifest_flag key-file "$manifest"); then
    health_tls=(--cacert "$ca" --cert "$cert" --key "$key")
    health_source+=", with etcd's own --trusted-ca-file, --cert-file and --key-file"
  fi
  return 0
}

etcd_healthy() {
  local body
  body=$(curl --silent --fail --max-time 3 ${health_tls[@]+"${health_tls[@]}"} -- "$health_url" 2>/dev/null) ||
    return 1
  [[ $body == *'"health":"true"'* || $body == *'"health": "true"'* ]]
}

# A closed port is not enough: etcd closes its listeners before it has finished with its files. bbolt
# holds an exclusive flock on the database while the process lives, so wait for that too (flock is
# util-linux, on every node; without it, the port alone decides).
etcd_database_locked() {
  local db="$data_dir/member/snap/db"
  [[ -f $db ]] && command -v flock >/dev/null 2>&1 || return 1
  ! flock --nonblock --shared "$db" true 2>/dev/null
}

wait_until_etcd_stopped() {
  local deadline=$((SECONDS + stop_timeout))
  while etcd_port_open || etcd_database_locked; do
    ((SECONDS >= deadline)) && return 1
    nap "$poll_seconds"
  done
  return 0
}

wait_until_etcd_healthy() {
  local deadline=$((SECONDS + start_timeout))
  resolve_etcd_health
  log "asking etcd's health at $health_url ($health_source)"
  until etcd_healthy; do
    ((SECONDS >= deadline)) && return 1
    nap "$poll_seconds"
  done
  return 0
}

# Moving a static-pod manifest out of the kubelet's directory stops the pod; moving it back starts it.
park_manifest() {
  local name=$1 active=$manifest_dir/$1 parked=$parked_dir/$1
  mkdir -p -- "$parked_dir" || fail "cannot create $parked_dir"
  if [[ -e $active ]]; then
    mv -f -- "$active" "$parked" || fail "cannot move $active to $parked"
    log "parked $name in $parked_dir"
  elif [[ -e $parked ]]; then
    log "$name was already parked"
  else
    fail "manifest $name is in neither $manifest_dir nor $parked_dir"
  fi
}

unpark_manifest() {
  local name=$1 active=$manifest_dir/$1 parked=$parked_dir/$1
  if [[ -e $active ]]; then
    log "$name is already in $manifest_dir"
  elif [[ -e $parked ]]; then
    mv -f -- "$parked" "$active" || fail "cannot move $parked back to $active"
    log "moved $name back to $manifest_dir"
  else
    fail "manifest $name is in neither $manifest_dir nor $parked_dir"
  fi
}

# Chooses how curl verifies an https apiServerReadyUrl: the plan's CA file, else kubeadm's cluster CA when
# this node has it, else no verification, and that only for a loopback URL (the request carries no
# credential and only reads `ok`). Sets api_tls, api_request_url and api_tls_note; on refusal prints why
# and returns 1.
resolve_api_tls() {
  local loopback='^https://(localhost|127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|\[::1\])(:([0-9]+))?([/?#].*)?$'
  api_tls=()
  api_tls_note=""
  api_request_url=$ready_url
  [[ $ready_url == https://* ]] || return 0
  if [[ -n $api_ca_file ]]; then
    if [[ ! -r $api_ca_file ]]; then
      echo "apiServerCaFile $api_ca_file is not a readable file on this node"
      return 1
    fi
    api_tls=(--cacert "$api_ca_file")
  elif [[ -r $kubeadm_ca_file ]]; then
    api_tls=(--cacert "$kubeadm_ca_file")
    api_tls_note="verifying kube-apiserver's certificate with $kubeadm_ca_file"
  elif [[ $ready_url =~ $loopback ]]; then
    api_tls=(--insecure)
    api_tls_note="TLS NOT VERIFIED for $ready_url: no apiServerCaFile and no $kubeadm_ca_file; the URL is loopback"
    return 0
  else
    echo "cannot verify $ready_url: no apiServerCaFile and no $kubeadm_ca_file, and the agent skips TLS verification only for a loopback URL"
    return 1
  fi
  # kubeadm's serving certificate names no loopback address, but always `kubernetes`: a loopback URL is
  # asked as https://kubernetes:<port>/... while curl connects to the loopback address, so that the
  # certificate is verified against a name it has.
  if [[ $ready_url =~ $loopback ]]; then
    local host=${BASH_REMATCH[1]} port=${BASH_REMATCH[3]:-443}
    api_request_url="https://kubernetes:$port${BASH_REMATCH[4]}"
    api_tls+=(--connect-to "kubernetes:$port:$host:$port")
    api_tls_note+="${api_tls_note:+; }verifying kube-apiserver's certificate for the name kubernetes while connecting to $host:$port"
  fi
  return 0
}

# Whether anything still listens on the port of apiServerReadyUrl: kube-apiserver serves (also while it
# drains, not ready) until it closes its listener, whatever the URL would answer.
apiserver_port_open() {
  if [[ $ready_url == https://* ]]; then port_open "$ready_url" 443; else port_open "$ready_url" 80; fi
}

# Whether kube-apiserver answers ready: HTTP 200 with the body `ok`. Sets api_last_answer for messages.
api_ready() {
  local code body
  code=$(curl --silent --show-error --max-time 5 --connect-timeout 3 ${api_tls[@]+"${api_tls[@]}"} \
    --output "$work_dir/readyz" --write-out '%{http_code}' -- "$api_request_url" 2>"$work_dir/readyz.err")
  if [[ $code == 000 || -z $code ]]; then
    api_last_answer="no answer ($(head -c 160 "$work_dir/readyz.err" | tr '\n' ' '))"
    return 1
  fi
  body=$(head -c 200 -- "$work_dir/readyz" | tr '\n' ' ')
  api_last_answer="HTTP $code ${body:0:160}"
  [[ $code == 200 && ${body//[[:space:]]/} == ok ]]
}

wait_until_api_ready() {
  local deadline=$((SECONDS + start_timeout))
  api_last_answer="not asked"
  until api_ready; do
    ((SECONDS >= deadline)) && return 1
    nap "$poll_seconds"
  done
  return 0
}

# Prints the ids of the processes that run component $1 on this node, as pgrep sees them (returns 1 when
# there is no pgrep). Processes whose command line also names this node's Kubernetes directory (the parent
# of manifestDir: kubeadm's components read their kubeconfig from /etc/kubernetes) are preferred, so that
# nodes sharing one host (the local stand-in) tell their components apart; otherwise every process whose
# command line contains the component's name.
component_pids() {
  local pattern=${1//./\\.} kube_dir pid cmdline broad=() narrow=()
  command -v pgrep >/dev/null 2>&1 || return 1
  kube_dir=$(dirname -- "$manifest_dir")/
  while read -r pid; do
    [[ $pid =~ ^[0-9]+$ && $pid != "$$" && $pid != "$BASHPID" ]] || continue
    broad+=("$pid")
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [[ $cmdline == *"$kube_dir"* ]] && narrow+=("$pid")
  done < <(pgrep -f -- "$pattern" 2>/dev/null)
  if ((${#narrow[@]})); then
    printf '%s\n' "${narrow[@]}"
  elif ((${#broad[@]})); then
    printf '%s\n' "${broad[@]}"
  fi
  return 0
}

process_alive() {
  if [[ -d /proc/self ]]; then
    [[ -d /proc/$1 ]]
  else
    kill -0 "$1" 2>/dev/null
  fi
}

# Restarts the static pod of manifest $1: parks it, waits until the kubelet has stopped the pod (its
# processes gone, when the agent can see them; otherwise a fixed grace), and moves it back. A manifest that
# an interrupted run left parked is moved back. Adds to restarted, restart_absent and restart_warnings.
# Parks static pod manifest $1 and waits, until the SECONDS deadline $2, for the processes that ran it
# (looked for while it was still in place) to exit. Sets parked_pids; on timeout sets still_running_pid
# and returns 1.
park_and_wait_for_exit() {
  local name=$1 deadline=$2 pid
  mapfile -t parked_pids < <(component_pids "${name%.*}")
  park_manifest "$name"
  for pid in ${parked_pids[@]+"${parked_pids[@]}"}; do
    while process_alive "$pid"; do
      if ((SECONDS >= deadline)); then
        still_running_pid=$pid
        return 1
      fi
      nap "$poll_seconds"
    done
  done
}

# Moves back every restart manifest left parked (a restart cut short), naming them in put_back.
put_back_parked_restarts() {
  local name
  put_back=()
  for name in ${restart_manifests[@]+"${restart_manifests[@]}"}; do
    if [[ ! -e $manifest_dir/$name && -e $parked_dir/$name ]]; then
      unpark_manifest "$name"
      put_back+=("${name%.*}")
    fi
  done
}

restart_manifest() {
  local name=$1 component=${1%.*} active=$manifest_dir/$1 parked=$parked_dir/$1
  if [[ ! -e $active ]]; then
    if [[ -e $parked ]]; then
      unpark_manifest "$name"
      log "$component had been left parked by an interrupted run: moved it back"
      restarted+=("$component")
    else
      log "no $name in $manifest_dir: nothing to restart"
      restart_absent+=("$name")
    fi
    return
  fi
  if ! park_and_wait_for_exit "$name" $((SECONDS + stop_timeout)); then
    log "WARNING: $component (pid $still_running_pid) still ran ${stop_timeout} s after its manifest was parked"
    restart_warnings+=("$component not seen to stop within ${stop_timeout} s")
  elif ((${#parked_pids[@]})); then
    log "$component has stopped (pid ${parked_pids[*]})"
  else
    log "no process of $component visible here: leaving its manifest out for ${restart_grace_seconds} s"
    nap "$restart_grace_seconds"
  fi
  unpark_manifest "$name"
  restarted+=("$component")
}

restore_tool_path() {
  if [[ -n ${plan[tool.url]:-} ]]; then
    printf '%s' "$tool_dir/${plan[restoreTool]}"
  elif [[ ${plan[restoreTool]} == etcdutl ]]; then
    printf '%s' "${plan[etcdutlPath]:-etcdutl}"
  else
    printf '%s' "${plan[etcdctlPath]:-etcdctl}"
  fi
}

# The restore tool staged in the bucket: downloaded once per agent run and made executable only after it
# hashed to the plan's sha256; an agent that starts again later downloads it again.
fetch_restore_tool() {
  local name=${plan[restoreTool]} target code computed=""
  target=$tool_dir/$name
  [[ -x $target ]] && return 0
  mkdir -p -- "$tool_dir" || fail "cannot create $tool_dir"
  log "downloading $name from the bucket"
  code=$(curl_url "$tool_url" --max-time 300 --connect-timeout 10 --retry 2 --output "$target.part" \
    --write-out '%{http_code}' 2>"$work_dir/curl.err")
  if [[ $code != 200 ]]; then
    rm -f -- "$target.part"
    fail "cannot download $name from the bucket: HTTP $code $(head -c 200 "$work_dir/curl.err")"
  fi
  read -r computed _ < <(sha256sum -- "$target.part")
  if [[ $computed != "${plan[tool.sha256]}" ]]; then
    rm -f -- "$target.part"
    fail "the staged $name hashes to ${computed:-nothing}, the plan expects ${plan[tool.sha256]}: not run"
  fi
  { chmod 0755 -- "$target.part" && mv -f -- "$target.part" "$target"; } || fail "cannot make $target executable"
}

check_restore_tool() {
  local tool tool_name output major minor
  tool_name=${plan[restoreTool]}
  [[ -n ${plan[tool.url]:-} ]] && fetch_restore_tool
  tool=$(restore_tool_path)
  if ! command -v "$tool" >/dev/null 2>&1; then
    # Staged, made executable, and still refused: the filesystem it is on does not run programs.
    [[ -n ${plan[tool.url]:-} && -f $tool ]] &&
      fail "cannot execute the staged $tool_name at $tool: is $(dirname -- "$tool_dir") on a filesystem mounted noexec? Use toolPath instead"
    fail "$tool_name not found (looked for $tool)"
  fi
  output=$(ETCDCTL_API=3 "$tool" version 2>&1) || fail "$tool version failed: ${output:0:200}"
  [[ $output =~ version:\ *v?([0-9]+)\.([0-9]+)\.([0-9]+) ]] || fail "cannot read a version from '$tool version'"
  major=${BASH_REMATCH[1]}
  minor=${BASH_REMATCH[2]}
  tool_version="$tool_name ${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
  if [[ $tool_name == etcdctl ]] && ((major > 3 || (major == 3 && minor >= 6))); then
    fail "$tool_version has no snapshot restore (moved to etcdutl in 3.6): the plan must name etcdutl"
  fi
  if [[ -n ${plan[bumpRevision]:-} ]] && ! tool_can_bump "$tool"; then
    [[ ${plan[revisionBumpOptional]:-} == true ]] ||
      fail "$tool_version has no --bump-revision or --mark-compacted: stage a release that has them (toolObject), or set allowWithoutRevisionBump to restore without"
    log "$tool_version has no --bump-revision or --mark-compacted: this member is restored WITHOUT a revision bump (allowWithoutRevisionBump)"
  fi
  log "found $tool_version"
}

# Whether the restore tool takes the plan's revision flags (etcdutl since a 3.5 release; some etcdctl 3.4).
tool_can_bump() {
  local output
  output=$("$1" snapshot restore --help 2>&1)
  [[ $output == *--bump-revision* && (${plan[markCompacted]:-} != true || $output == *--mark-compacted*) ]]
}

# A download that failed its checks is worthless and as large as the database: it goes before the report,
# with the data dir restored from it, if any.
reject_download() {
  rm -rf -- "$restore_root"
  rm -f -- "$download" "$download.part"
  fail "$1"
}

# Downloads the snapshot to $download. An HTTP error or a transfer curl gives up on (cut short, stalled) is
# tried three times in all; no partial download is left behind.
download_snapshot() {
  local code attempt curl_status=0 problem
  log "downloading the snapshot (${plan[snapshot.bytes]} bytes)"
  for attempt in 1 2 3; do
    download_attempt
    [[ $code == 200 && $curl_status == 0 ]] && break
    problem="HTTP $code"
    [[ $curl_status != 0 ]] && problem+=", curl exit $curl_status"
    log "snapshot download attempt $attempt failed: $problem $(head -c 200 "$work_dir/download.err")"
    rm -f -- "$download.part"
    ((attempt < 3)) && nap $((attempt * 2))
  done
  [[ $code == 200 ]] || fail "cannot download the snapshot: HTTP $code"
  if [[ $curl_status != 0 ]]; then
    fail "cannot download the snapshot: the transfer failed 3 times (curl exit $curl_status: $(head -c 200 "$work_dir/download.err"))"
  fi
  mv -f -- "$download.part" "$download" || reject_download "cannot rename the download"
  message="downloaded the snapshot ($(size_text "${plan[snapshot.bytes]}")); restoring it"
  put_status 1 || true
}

# One download in the background, reporting how far it got every progress_seconds: a large snapshot takes
# minutes, and the status message is what the state machine, the console and a notice of a phase that ran
# out of time show. Sets code and curl_status; curl's own error goes to download.err, apart from the status
# PUTs' curl.err. The URL reaches curl in a config file of the private work dir (as curl_url's stdin keeps it
# off the command line), so that $! is curl itself, which cleanup can stop.
download_attempt() {
  local total=${plan[snapshot.bytes]} got last_report=$SECONDS
  curl_config_line "$snapshot_url" >"$work_dir/snapshot-url.conf"
  curl -K "$work_dir/snapshot-url.conf" --silent --show-error --globoff --connect-timeout 10 \
    --speed-limit 1024 --speed-time 60 --output "$download.part" --write-out '%{http_code}' \
    >"$work_dir/download.code" 2>"$work_dir/download.err" &
  download_pid=$!
  while kill -0 "$download_pid" 2>/dev/null; do
    nap "$poll_seconds"
    kill -0 "$download_pid" 2>/dev/null || break
    ((SECONDS - last_report >= progress_seconds)) || continue
    got=$(stat -c %s -- "$download.part" 2>/dev/null) || got=0
    message="downloading the snapshot: $(size_text "$got") of $(size_text "$total") ($((got * 100 / (total > 0 ? total : 1)))%)"
    put_status 1 || true
    last_report=$SECONDS
  done
  wait "$download_pid"
  curl_status=$?
  download_pid=""
  code=$(<"$work_dir/download.code") || code=000
  rm -f -- "$work_dir/snapshot-url.conf"
}

# A byte count for a message, in whole units: KiB below 1 MiB, MiB below 10 GiB, GiB above.
size_text() {
  local bytes=$1
  if ((bytes < 1 << 20)); then
    printf '%d KiB' $((bytes >> 10))
  elif ((bytes < 10 << 30)); then
    printf '%d MiB' $((bytes >> 20))
  else
    printf '%d GiB' $((bytes >> 30))
  fi
}

# The plan's size, and whole 512-byte pages before the 32-byte sha256 trailer.
check_download_size() {
  local size want=${plan[snapshot.bytes]}
  size=$(wc -c <"$download") || reject_download "cannot read $download"
  size=${size//[[:space:]]/}
  ((size == want)) || reject_download "snapshot download has $size bytes, the plan says $want"
  ((size % 512 == 32)) || reject_download "snapshot download has no sha256 trailer (size % 512 is $((size % 512)))"
}

# Hashes the database part (all but the trailer) in the background, beside the restore tool, which reads
# the same file from the page cache: the hash then takes no time of its own. (Hashing in the download's
# pipe, curl | tee | head -c | sha256sum, held the download to sha256sum's pace and passed every byte
# through two more processes: slower on the bench's two cores than downloading, then hashing.) dd reads
# 1 MiB blocks where head -c reads 8 KiB ones.
start_hashing_download() {
  local database_bytes=$((${plan[snapshot.bytes]} - 32))
  rm -f -- "$work_dir/download.sha256"
  (dd if="$download" bs=1M count="$database_bytes" iflag=count_bytes,fullblock status=none |
    sha256sum >"$work_dir/download.sha256") 2>"$work_dir/hash.err" &
  hash_pid=$!
}

# Proves the download whole, once the hash beside the restore is done: sha256(all but the last 32 bytes)
# == trailer == the catalogue. On failure, what was restored from the download goes with it.
verify_download() {
  local computed="" trailer expected=${plan[snapshot.sha256]} problem
  wait "$hash_pid" && read -r computed _ <"$work_dir/download.sha256"
  if [[ ! $computed =~ ^[0-9a-f]{64}$ ]]; then
    problem=$(head -c 200 "$work_dir/hash.err")
    reject_download "sha256sum failed${problem:+: $problem}"
  fi
  trailer=$(tail -c 32 -- "$download" | od -An -v -tx1)
  trailer=${trailer//[[:space:]]/}
  if [[ $computed != "$trailer" ]]; then
    reject_download "snapshot is corrupt: its database hashes to $computed but its trailer says $trailer"
  fi
  if [[ $computed != "$expected" ]]; then
    reject_download "snapshot sha256 mismatch: the download hashes to $computed, the plan expects $expected"
  fi
  log "snapshot verified: ${plan[snapshot.bytes]} bytes, sha256 $computed"
}

run_restore_tool() {
  local tool args status
  [[ -n ${plan[tool.url]:-} ]] && fetch_restore_tool
  tool=$(restore_tool_path)
  args=(snapshot restore "$download" "--name=${plan[member.name]}" "--initial-cluster=${plan[initialCluster]}"
    "--initial-cluster-token=${plan[initialClusterToken]}"
    "--initial-advertise-peer-urls=${plan[member.peerUrl]}" "--data-dir=$restore_root")
  # An optional bump is checked again here: the prepare phase may have run in an agent before this one.
  if [[ -n ${plan[bumpRevision]:-} ]] && { [[ ${plan[revisionBumpOptional]:-} != true ]] || tool_can_bump "$tool"; }; then
    args+=("--bump-revision=${plan[bumpRevision]}")
    [[ ${plan[markCompacted]:-} == true ]] && args+=(--mark-compacted)
    revision_note="; revisions bumped by ${plan[bumpRevision]}"
  elif [[ -n ${plan[bumpRevision]:-} ]]; then
    revision_note="; WITHOUT a revision bump (the restore tool has no --bump-revision)"
  fi
  log "running ${plan[restoreTool]} snapshot restore into $restore_root"
  ETCDCTL_API=3 "$tool" "${args[@]}" >"$work_dir/restore.out" 2>&1
  status=$?
  local line
  while IFS= read -r line; do log "  $line"; done < <(tail -n 5 -- "$work_dir/restore.out")
  if ((status != 0)); then
    rm -rf -- "$restore_root"
    # A corrupt snapshot fails the tool too: the hash names the cause.
    verify_download
    fail "${plan[restoreTool]} snapshot restore failed with exit code $status: $(tail -n 1 -- "$work_dir/restore.out")"
  fi
}

# ---------------------------------------------------------------------------------------------------------
# The phases

phase_prepare() {
  local free minimum=${plan[minimumFreeBytes]}
  [[ -d $work_home ]] || fail "the data dir's parent $work_home does not exist"
  free=$(available_bytes "$work_home") || fail "cannot read the free space of $work_home"
  free_bytes=$free
  if [[ $work_home == "$data_dir" ]]; then
    log "$data_dir is a mount point: the restore swaps its member dir and keeps its files inside it"
  fi
  log "$free bytes free on the filesystem of $data_dir; the restore needs ${plan[minimumFreeBytes]}"
  ((free >= minimum)) ||
    fail "only $free bytes free on the filesystem of $data_dir; the restore needs ${plan[minimumFreeBytes]} (download, new data dir and the old one kept)"
  check_restore_tool
  local manifest wal_dir
  manifest=$(etcd_manifest_file)
  [[ -e $manifest ]] || fail "no etcd manifest $etcd_manifest in $manifest_dir"
  # The restore writes the WAL into the new data dir: etcd would start on the old one kept elsewhere.
  if wal_dir=$(manifest_flag wal-dir "$manifest"); then
    fail "etcd's manifest sets --wal-dir=$wal_dir, which the agent does not restore: restore this member by hand (docs/restore.md)"
  fi
  if [[ -n $apiserver_manifest && ! -e $manifest_dir/$apiserver_manifest && ! -e $parked_dir/$apiserver_manifest ]]; then
    fail "no API server manifest $apiserver_manifest in $manifest_dir"
  fi
  # Refused now, before anything stops, rather than after the restore.
  if [[ -n $apiserver_manifest && -n $ready_url ]]; then
    resolve_api_tls >"$work_dir/tls.problem" || fail "$(head -c 300 "$work_dir/tls.problem")"
  fi
  message="ready: $free bytes free, $tool_version"
  if [[ -n $ready_url ]]; then
    message+="; kube-apiserver's readiness will be asked at $ready_url (from $ready_source)"
  elif [[ -n $ready_skipped ]]; then
    message+="; kube-apiserver's readiness will not be checked: $ready_skipped"
  fi
}

phase_stop_apiserver() {
  if [[ -z $apiserver_manifest ]]; then
    message="no API server on this node"
    return
  fi
  local deadline=$((SECONDS + stop_timeout)) evidence=()
  park_and_wait_for_exit "$apiserver_manifest" "$deadline" ||
    fail "kube-apiserver (pid $still_running_pid) still runs ${stop_timeout} s after its manifest was parked"
  ((${#parked_pids[@]})) && evidence+=("its processes have exited (pid ${parked_pids[*]})")
  if [[ -n $ready_url ]]; then
    while apiserver_port_open; do
      ((SECONDS < deadline)) ||
        fail "kube-apiserver still accepts connections at $ready_url ${stop_timeout} s after its manifest was parked"
      nap "$poll_seconds"
    done
    evidence+=("its port is closed")
  fi
  if ((${#evidence[@]} == 0)); then
    log "no process of kube-apiserver visible here and no apiServerReadyUrl: leaving it ${restart_grace_seconds} s to stop"
    nap "$restart_grace_seconds"
    evidence+=("not seen here; waited ${restart_grace_seconds} s")
  fi
  local seen
  printf -v seen '%s; ' "${evidence[@]}"
  seen=${seen%; }
  log "kube-apiserver has stopped: $seen"
  message="kube-apiserver stopped: $seen"
}

phase_stop() {
  # The previous barrier stopped every API server; one that is back would serve while etcd stops.
  if [[ -n $apiserver_manifest && -e $manifest_dir/$apiserver_manifest ]]; then
    fail "kube-apiserver's manifest is still in $manifest_dir: run the stop-apiserver phase first"
  fi
  park_manifest "$etcd_manifest"
  wait_until_etcd_stopped || fail "etcd still accepts connections on $client_url ${stop_timeout} s after its manifest was parked"
  log "etcd has stopped"
  message="etcd stopped"
}

phase_restore() {
  local free need
  [[ -e $manifest_dir/$etcd_manifest ]] && fail "etcd's manifest is still in $manifest_dir: run the stop phase first"
  etcd_port_open && fail "etcd still accepts connections on $client_url: it must be stopped before a restore"
  [[ -e $pre_restore_dir ]] && old_data_dir=$pre_restore_root
  if [[ -e $restored_marker ]]; then
    message="already restored from the snapshot at revision ${plan[snapshot.revision]}"
    return
  fi
  if [[ -d $pre_restore_dir && -d $new_dir && ! -e $live_dir ]]; then
    log "completing an interrupted swap"
    mv -T -- "$new_dir" "$live_dir" || fail "cannot move $new_dir to $live_dir"
    complete_restore
    return
  fi
  if [[ -d $pre_restore_dir && -d $live_dir && ! -e $new_dir ]]; then
    log "the swap was done before the agent stopped"
    complete_restore
    return
  fi
  [[ -e $pre_restore_dir ]] &&
    fail "$pre_restore_dir exists but $live_dir and $new_dir are not as a swap leaves them: inspect by hand"

  rm -rf -- "$restore_root" "$download" "$download.part"
  free=$(available_bytes "$work_home") || fail "cannot read the free space of $work_home"
  need=$((${plan[snapshot.bytes]} * 2))
  ((free >= need)) || fail "only $free bytes free on the filesystem of $data_dir; the download and the new data dir need $need"

  download_snapshot
  check_download_size
  start_hashing_download
  run_restore_tool
  verify_download
  # Spent once restored (a re-run downloads again): deleted before complete_restore's sync, which would
  # otherwise write the whole download out to disk only for it to be deleted after.
  rm -f -- "$download"

  # The restored dir takes the old one's owner, for an etcd that does not run as root.
  if [[ -d $live_dir && $(id -u) == 0 ]]; then
    chown -R --reference="$live_dir" -- "$restore_root" || fail "cannot give $restore_root the owner of $live_dir"
  fi
  if [[ -e $live_dir ]]; then
    move_dir "$live_dir" "$pre_restore_dir" || fail "cannot move $live_dir to $pre_restore_dir"
    old_data_dir=$pre_restore_root
    log "kept the old data dir as $pre_restore_root"
  else
    log "there was no data dir at $live_dir to keep"
  fi
  mv -T -- "$new_dir" "$live_dir" || fail "cannot move $new_dir to $live_dir"
  complete_restore
}

complete_restore() {
  # Left empty by the swap when the member dir moved out of it.
  [[ $restore_root != "$new_dir" ]] && rm -rf -- "$restore_root"
  sync
  : >"$restored_marker" || fail "cannot write $restored_marker"
  rm -f -- "$download" "$download.part"
  log "restored $data_dir from the snapshot at revision ${plan[snapshot.revision]}"
  message="restored from the snapshot at revision ${plan[snapshot.revision]}$revision_note"
}

phase_start() {
  unpark_manifest "$etcd_manifest"
  wait_until_etcd_healthy || fail "etcd did not answer healthy at $health_url within ${start_timeout} s"
  log "etcd is healthy"
  message="etcd started and healthy at $health_url"
}

phase_start_apiserver() {
  if [[ -z $apiserver_manifest ]]; then
    message="no API server on this node"
    return
  fi
  unpark_manifest "$apiserver_manifest"
  local readiness name
  if [[ -n $ready_url ]]; then
    resolve_api_tls >"$work_dir/tls.problem" || fail "$(head -c 300 "$work_dir/tls.problem")"
    [[ -n $api_tls_note ]] && log "$api_tls_note"
    log "waiting up to ${start_timeout} s for $ready_url (from $ready_source) to answer ok"
    wait_until_api_ready ||
      fail "kube-apiserver did not answer ready at $ready_url within ${start_timeout} s (last: $api_last_answer); kube-scheduler and kube-controller-manager were not restarted"
    log "kube-apiserver is ready"
    readiness="the API answered ready at $ready_url"
    api_readiness="ready"
  else
    readiness="API readiness not checked ($ready_skipped)"
    api_readiness="not checked"
  fi
  restarted=()
  restart_absent=()
  restart_warnings=()
  for name in ${restart_manifests[@]+"${restart_manifests[@]}"}; do
    restart_manifest "$name"
  done
  message="kube-apiserver started; $readiness"
  if ((${#restarted[@]})); then
    message+="; restarted ${restarted[*]}"
  elif ((${#restart_manifests[@]} == 0)); then
    message+="; no restart manifests in the plan"
  fi
  ((${#restart_absent[@]})) && message+="; not on this node: ${restart_absent[*]}"
  ((${#restart_warnings[@]})) && message+="; WARNING: ${restart_warnings[*]}"
}

phase_rollback() {
  local rolled_back=0 target healthy=1 etcd_stopped=0
  # No data dir swapped: etcd's data is its own, whether it still runs (the failure came before the stop
  # barrier reached this node) or its manifest is parked (stopped, or still stopping under a hung kubelet).
  # Stopping it now would take members down for nothing, and waiting for a stop that does not come would
  # leave both manifests parked; only what was parked goes back.
  if [[ ! -d $pre_restore_dir ]]; then
    [[ -e $parked_dir/$etcd_manifest ]] && etcd_stopped=1
  else
    if [[ -n $apiserver_manifest && -e $manifest_dir/$apiserver_manifest ]]; then park_manifest "$apiserver_manifest"; fi
    if [[ -e $manifest_dir/$etcd_manifest ]]; then park_manifest "$etcd_manifest"; fi
    wait_until_etcd_stopped || fail "etcd still accepts connections on $client_url ${stop_timeout} s after its manifest was parked"
  fi
  if [[ -d $pre_restore_dir ]]; then
    if [[ -e $live_dir ]]; then
      target=$failed_root
      [[ -e $target ]] && target=$failed_root.$(date -u +%Y%m%dT%H%M%S)
      move_dir "$live_dir" "$target$member_suffix" || fail "cannot move $live_dir to $target"
      log "moved the restored data dir aside to $target"
    fi
    mv -T -- "$pre_restore_dir" "$live_dir" || fail "cannot move $pre_restore_dir back to $live_dir"
    # Left empty when the member dir moved out of it.
    [[ $pre_restore_root != "$pre_restore_dir" ]] && rmdir -- "$pre_restore_root"
    sync
    rolled_back=1
    log "moved the original data dir back to $data_dir"
  fi
  rm -f -- "$restored_marker" "$download" "$download.part"
  rm -rf -- "$restore_root"
  old_data_dir=""
  unpark_manifest "$etcd_manifest"
  wait_until_etcd_healthy || healthy=0
  [[ -n $apiserver_manifest ]] && unpark_manifest "$apiserver_manifest"
  put_back_parked_restarts
  ((${#put_back[@]})) && log "moved back ${put_back[*]}, which an interrupted start-apiserver had left parked"
  ((healthy)) || fail "rolled back, but etcd did not answer healthy at $health_url within ${start_timeout} s"
  if ((rolled_back)); then
    message="rolled back: the original data dir is in place and etcd is healthy"
  elif ((etcd_stopped)); then
    message="nothing was swapped on this node; etcd's and kube-apiserver's manifests are back, etcd is healthy"
  else
    message="etcd was never stopped on this node and kept running; what was parked is back, etcd is healthy"
  fi
}

run_phase() {
  phase=$1
  state="working"
  message="$phase in progress"
  log "phase $phase for restore $restore_id, member $member_name"
  # finish and abort change nothing on the node: the previous phase's done stands until theirs replaces it,
  # so that an agent killed in between leaves a report that the finish check accepts.
  [[ $phase == finish || $phase == abort ]] || put_status || true
  case $phase in
  prepare) phase_prepare ;;
  stop-apiserver) phase_stop_apiserver ;;
  stop) phase_stop ;;
  restore) phase_restore ;;
  start) phase_start ;;
  start-apiserver) phase_start_apiserver ;;
  rollback) phase_rollback ;;
  finish)
    message="finished"
    [[ $api_readiness == "not checked" ]] && message+="; API readiness was not checked ($ready_skipped)"
    ;;
  abort) message="aborted; the agent changed nothing in this phase" ;;
  esac
  state="done"
  log "phase $phase done: $message"
  put_status || true
}

check_settings() {
  [[ $poll_seconds =~ ^[0-9]{1,4}(\.[0-9]{1,3})?$ ]] || {
    echo "ETCD_RESTORE_AGENT_POLL_SECONDS must be a number of seconds" >&2
    exit 2
  }
  [[ $restart_grace_seconds =~ ^[0-9]{1,4}(\.[0-9]{1,3})?$ ]] || {
    echo "ETCD_RESTORE_AGENT_RESTART_GRACE_SECONDS must be a number of seconds" >&2
    exit 2
  }
  if ! is_count "$heartbeat_seconds" || ! is_count "$plan_wait_seconds"; then
    echo "ETCD_RESTORE_AGENT_HEARTBEAT_SECONDS and ETCD_RESTORE_AGENT_PLAN_WAIT_SECONDS must be whole numbers" >&2
    exit 2
  fi
  local command
  for command in curl sha256sum dd od head tail wc df mv timeout; do
    command -v "$command" >/dev/null 2>&1 || {
      echo "etcd-restore-agent needs $command" >&2
      exit 2
    }
  done
}

main() {
  if (($# != 2)); then
    echo "usage: etcd-restore-agent.sh PLAN_URL STATUS_URL" >&2
    exit 2
  fi
  plan_url=$1
  status_url=$2
  check_settings
  work_dir=$(mktemp -d) || exit 2
  trap cleanup EXIT
  trap 'on_signal TERM' TERM
  trap 'on_signal INT' INT

  local completed=""
  while :; do
    read_plan
    adopt_plan
    if [[ ${plan[phase]} != "$completed" ]]; then
      run_phase "${plan[phase]}"
      completed=${plan[phase]}
      # The last phase a restore can give: kept polling, the agent would only end on its expired URLs.
      if [[ $completed == finish || $completed == abort || $completed == rollback ]]; then
        ((status_dirty)) && put_status 10
        exit 0
      fi
    elif ((status_dirty || SECONDS - last_put >= heartbeat_seconds)); then
      put_status || true
    fi
    nap "$poll_seconds"
  done
}

# Sourced by tests to reach the parser and the JSON writer (`return` works only when sourced); run otherwise.
if ! (return 0 2>/dev/null); then
  main "$@"
fi
