"""Filters of the django_celery role: the loops its variables need, kept out of Jinja.

Each filter takes plain data (lists and mappings; hostvars behaves as one) so that
tests/test_filters.py can call it directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import tomllib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from ansible.errors import AnsibleFilterError
from ansible_collections.django_celery.fleet.plugins.module_utils.django_celery_pip import (
    read_lines,
    requirement_files,
    requirements_digest,
)

LOOPBACK = "127.0.0.1"


def private_address(host_vars: Mapping) -> str:
    """Where the other hosts of the fleet reach a host: its django_celery_private_address when
    its inventory sets one, else the address of its default route (from its facts)."""
    address = host_vars.get("django_celery_private_address")
    if address:
        return str(address)
    facts = host_vars.get("ansible_facts") or {}
    default_ipv4 = facts.get("default_ipv4") or {}
    if not default_ipv4.get("address"):
        name = host_vars.get("inventory_hostname", "a host of the fleet")
        raise ValueError(
            f"{name} has no django_celery_private_address and no default IPv4 route in its "
            "facts: gather its facts in the same run, or set django_celery_private_address"
        )
    return str(default_ipv4["address"])


def fleet_addresses(hosts: Iterable[str], hostvars: Mapping) -> list[str]:
    """The private address of every host of the fleet, each once, in inventory order."""
    addresses: list[str] = []
    for host in hosts:
        address = private_address(hostvars[host])
        if address not in addresses:
            addresses.append(address)
    return addresses


def group_addresses(
    group_names: Iterable[str], groups: Mapping, hostvars: Mapping, inventory_hostname: str
) -> dict[str, str]:
    """Where this host reaches the service of each group (broker, database): loopback on a host
    of the group itself or when the inventory has no such group, otherwise the private
    address of the group's first host."""
    found = {}
    for group in group_names:
        members = list(groups.get(group) or [])
        if not members or inventory_hostname in members:
            found[group] = LOOPBACK
        else:
            found[group] = private_address(hostvars[members[0]])
    return found


def pools(worker_pools: Iterable[Mapping], default_concurrency: int) -> list[dict]:
    """Each worker pool with every option filled in: the queues default to Celery's own
    (celery), the concurrency to the host's CPU count, the pool to prefork."""
    filled = []
    for pool in worker_pools:
        filled.append(
            {
                "name": pool["name"],
                "queues": list(pool.get("queues") or ["celery"]),
                "concurrency": pool.get("concurrency") or default_concurrency,
                "pool": pool.get("pool") or "prefork",
                "max_tasks_per_child": pool.get("max_tasks_per_child"),
                "max_memory_per_child": pool.get("max_memory_per_child"),
                "extra_args": list(pool.get("extra_args") or []),
            }
        )
    return filled


def worker_nodes(
    hosts: Iterable[str], hostvars: Mapping, default_pools: Iterable[Mapping]
) -> list[str]:
    """The Celery node names (pool@hostname) the fleet's worker hosts run: each host's own
    django_celery_worker_pools when its inventory sets them, else the default ones."""
    nodes = []
    for host in hosts:
        host_vars = hostvars[host]
        nodename = (host_vars.get("ansible_facts") or {}).get("nodename")
        if not nodename:
            raise ValueError(
                f"{host} has no facts in this run: its Celery node names are unknown. Run "
                "without --limit, or with a fact cache"
            )
        for pool in host_vars.get("django_celery_worker_pools") or default_pools:
            nodes.append(f"{pool['name']}@{nodename}")
    return sorted(nodes)


def duplicates(items: Iterable) -> list:
    """The items that occur more than once, each once, in order of first repetition."""
    seen, repeated = [], []
    for item in items:
        if item in seen and item not in repeated:
            repeated.append(item)
        seen.append(item)
    return repeated


def _normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_packages(needs: Iterable[Mapping], installed: Iterable[Mapping]) -> list[str]:
    """The pins of the packages the role runs that the virtualenv lacks. Each need is
    {'names': [distributions, any of which will do], 'pin': requirement to install}; installed
    is `pip list --format=json`. A project's own version of a package always wins."""
    present = {_normalized(package["name"]) for package in installed}
    return [need["pin"] for need in needs if not present & {_normalized(n) for n in need["names"]}]


def constraints(installed: Iterable[Mapping]) -> str:
    """A pip constraints file pinning what a virtualenv has (`pip list --format=json`): what
    the role adds may then not move any of the project's own packages."""
    return "".join(f"{package['name']}=={package['version']}\n" for package in installed)


def stale_hba_sources(content: str, database: str, users: str, fleet: Iterable[str]) -> list[str]:
    """The sources (address/32) of pg_hba.conf's `host DATABASE USER SOURCE scram-sha-256`
    lines, for any of the comma-separated users, whose address is no longer one of the fleet's:
    what the role wrote for a host that has left (community.postgresql.postgresql_pg_hba writes
    one line per user)."""
    keep = {f"{address}/32" for address in fleet}
    names = set(users.split(","))
    stale = []
    for line in content.splitlines():
        fields = line.split("#", 1)[0].split()
        if (
            fields[:2] == ["host", database]
            and fields[2:3] != []
            and fields[2] in names
            and fields[4:5] == ["scram-sha-256"]
        ):
            if fields[3] not in keep and fields[3] not in stale:
                stale.append(fields[3])
    return stale


def python_targets(hosts: Iterable[str], hostvars: Mapping) -> list[dict]:
    """The Python versions and CPU architectures of the hosts, each once: what the wheelhouse
    must hold wheels for, and the name of each one's wheelhouse (e.g. cp311-x86_64)."""
    targets = []
    for host in hosts:
        facts = hostvars[host]["ansible_facts"]
        version = facts["python"]["version"]
        arch = facts["architecture"]
        target = {
            "python": f"{version['major']}.{version['minor']}",
            "arch": arch,
            "name": f"cp{version['major']}{version['minor']}-{arch}",
        }
        if target not in targets:
            targets.append(target)
    return targets


def missing_archives(targets: Iterable[Mapping], directory: str) -> list[str]:
    """The wheelhouse archives (DIRECTORY/NAME.tar.gz, one per python_targets entry) that are not
    on the controller."""
    paths = [os.path.join(directory, f"{target['name']}.tar.gz") for target in targets]
    return [path for path in paths if not os.path.isfile(path)]


def rabbitmq_shared(needs: Iterable[Mapping]) -> dict:
    """What one RabbitMQ server must give every project on its host, from what each project
    needs ({consumer_timeout_ms, listeners, prometheus}): the longest consumer timeout (a shorter
    one would close the channel of another project's long task), every listener, each once,
    sorted, and the address of the Prometheus plugin's listener if any project monitors it (''
    if none does; it has one address, so two projects that want two differ and are refused)."""
    needs = list(needs)
    if not needs:
        raise ValueError("no project's needs to merge: this project's own must be among them")
    # Sorted: the same projects give the same file whichever of them runs.
    listeners = sorted({str(listener) for need in needs for listener in need["listeners"]})
    prometheus = sorted({str(need.get("prometheus") or "") for need in needs} - {""})
    if len(prometheus) > 1:
        raise ValueError(
            "the projects on this RabbitMQ host want its Prometheus plugin on different addresses "
            f"({', '.join(prometheus)}): it listens on one; monitor them from one fleet (the same "
            "django_celery_private_address, or all single-host)"
        )
    return {
        "consumer_timeout_ms": max(int(need["consumer_timeout_ms"]) for need in needs),
        "listeners": listeners,
        "prometheus": prometheus[0] if prometheus else "",
    }


def rabbitmq_listeners(conf: str) -> list[str]:
    """The TCP listeners a rabbitmq.conf declares (listeners.tcp.N = ADDRESS:PORT, and the
    Prometheus plugin's prometheus.tcp.ip = ADDRESS), in order."""
    key = r"(?:listeners\.tcp\.[^=\s]+|prometheus\.tcp\.ip)"
    return re.findall(rf"^{key}\s*=\s*(\S+)\s*$", conf, re.M)


def rabbitmq_nodes(hosts: Iterable[str], hostvars: Mapping) -> list[dict]:
    """The RabbitMQ cluster of a broker group, in inventory order: each host's node name
    (rabbit@ its short host name, which every node must resolve: tasks/broker_rabbitmq.yml
    writes them into /etc/hosts) and private address. Two hosts with one short name are refused:
    their nodes would have one name."""
    nodes = []
    for host in hosts:
        host_vars = hostvars[host]
        facts = host_vars.get("ansible_facts") or {}
        if not facts.get("hostname"):
            raise AnsibleFilterError(
                f"{host} has no host name in its facts: RabbitMQ names each node after it, so "
                "gather the broker hosts' facts in the same run (no --limit that leaves them out)"
            )
        short = str(facts["hostname"]).split(".")[0]
        nodes.append(
            {
                "host": host,
                "hostname": short,
                "node": f"rabbit@{short}",
                "address": private_address(host_vars),
            }
        )
    names = [node["hostname"] for node in nodes]
    if duplicates(names):
        raise AnsibleFilterError(
            f"broker hosts share a short host name ({', '.join(duplicates(names))}): RabbitMQ "
            "names each node rabbit@<short host name>, so each broker host needs its own"
        )
    return nodes


def rabbitmq_majority_runs(
    running: Iterable[str], nodes: Iterable[str], this_node: str, partitions: Mapping
) -> bool:
    """Whether a cluster node may go on (rabbitmqctl cluster_status): it runs in one cluster with
    a majority of the nodes, only nodes of this cluster, and no partition is recorded. A node
    that is down does not count against it; one that formed a cluster of its own does."""
    running, nodes = set(running), set(nodes)
    return (
        this_node in running
        and running <= nodes
        and len(running) * 2 > len(nodes)
        and not partitions
    )


def rabbitmq_partitioned_nodes(partitions: Mapping | Sequence, nodes: Iterable[str]) -> list[str]:
    """The nodes on the losing side of a recorded partition (rabbitmqctl cluster_status:
    {node: [nodes it is partitioned from]}), which rejoin only by restarting: each node that
    records itself as partitioned from more than half of the other nodes, or that more than half
    of the other nodes record as partitioned from them. A node that froze and came back records
    every other node, and some of them record it (measured, RabbitMQ 3.10.8: one or both). When
    that would be half of the cluster or more there is no majority side, and none is named."""
    nodes = list(nodes)
    others = len(nodes) - 1
    reported = {
        reporter: set(listed)
        for reporter, listed in (
            partitions.items() if isinstance(partitions, Mapping) else partitions
        )
    }
    listed_by: dict[str, set[str]] = {}
    for reporter, listed in reported.items():
        for other in listed:
            listed_by.setdefault(other, set()).add(reporter)
    losing = sorted(
        node
        for node in nodes
        if len(reported.get(node, ())) * 2 > others or len(listed_by.get(node, ())) * 2 > others
    )
    return losing if len(losing) * 2 < len(nodes) else []


def debian_releases(hosts: Iterable[str], hostvars: Mapping) -> dict[str, list[str]]:
    """{Debian major release: [hosts]} of the hosts whose facts are gathered (the others are
    left out: the cluster's node names already need every broker host's facts)."""
    releases: dict[str, list[str]] = {}
    for host in hosts:
        facts = (hostvars.get(host) or {}).get("ansible_facts") or {}
        release = str(facts.get("distribution_major_version") or "")
        if release:
            releases.setdefault(release, []).append(host)
    return releases


def rabbitmq_peer_listing(results: Sequence[Mapping], node: str) -> str:
    """The broker host whose running node lists `node` as a member of the cluster (results of
    `rabbitmqctl cluster_status --formatter json` delegated to each other broker host, in order),
    or "" when none does: a blank node of that name is then a new node, not a replaced one."""
    for result in results:
        if result.get("rc") != 0 or not result.get("stdout"):
            continue
        try:
            status = json.loads(result["stdout"])
        except ValueError:
            continue
        if node in (status.get("disk_nodes") or []) + (status.get("ram_nodes") or []):
            return str(result.get("item", ""))
    return ""


def broker_addresses(
    members: Sequence[str], hostvars: Mapping, inventory_hostname: str
) -> list[str]:
    """The broker hosts' private addresses in the order this host tries them (kombu fails over
    from one to the next): a broker host starts with itself, any other host at a place of its
    own (its name's CRC-32), so the fleet's connections spread over the nodes."""
    members = list(members)
    if not members:
        return []
    if inventory_hostname in members:
        start = members.index(inventory_hostname)
    else:
        start = zlib.crc32(inventory_hostname.encode()) % len(members)
    ordered = members[start:] + members[:start]
    return [private_address(hostvars[host]) for host in ordered]


DEAD_LETTER = "dead_letter"


def rabbitmq_quorum_definitions(queues: Iterable[str], vhost: str) -> dict:
    """RabbitMQ definitions (rabbitmqctl import_definitions) of a project's quorum queues: each
    queue as Celery declares it with task_default_queue_type / task_create_missing_queue_type
    "quorum" and topic exchanges (durable, x-queue-type quorum, a topic exchange of the queue's
    name bound with the queue's name; anything else and a worker's own declaration is refused as
    inequivalent), and the dead_letter queue with its fanout exchange. The policy that limits
    deliveries is set apart (community.rabbitmq.rabbitmq_policy compares it with the live one)."""
    queues = list(queues)
    if not queues:
        raise ValueError("no queue to declare: the fleet's pools consume none")
    if DEAD_LETTER in queues:
        raise ValueError(
            f"a pool consumes the queue {DEAD_LETTER!r}, the name of the dead-letter queue"
        )
    declared = [*queues, DEAD_LETTER]
    return {
        "queues": [
            {
                "name": queue,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-queue-type": "quorum"},
            }
            for queue in declared
        ],
        "exchanges": [
            {
                "name": queue,
                "vhost": vhost,
                "type": "fanout" if queue == DEAD_LETTER else "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for queue in declared
        ],
        "bindings": [
            {
                "source": queue,
                "vhost": vhost,
                "destination": queue,
                "destination_type": "queue",
                "routing_key": queue,
                "arguments": {},
            }
            for queue in declared
        ],
    }


def rabbitmq_queue_type_conflicts(listed: str, queues: Iterable[str], wanted: str) -> list[str]:
    """The queues of `rabbitmqctl list_queues name type --formatter json` output that exist with
    another type than wanted (classic or quorum), as "NAME (TYPE)"; RabbitMQ refuses to declare a
    queue again with another type, and a worker would fail at start."""
    names = set(queues)
    found = json.loads(listed) if listed.strip() else []
    return [
        f"{q['name']} ({q['type']})"
        for q in found
        if q["name"] in names and wanted not in str(q["type"])
    ]


def invalid_values(checks: Mapping[str, Mapping]) -> list[str]:
    """The values that would break the unit, configuration file, URL or command they end up in.

    checks maps a variable's name to {"values": a value or a list of them, "pattern": a regular
    expression each must match in full, "must": what to write instead}; the result names each
    variable that fails, with its bad values, as the validation message shows it."""
    problems = []
    for name, check in checks.items():
        values = check["values"]
        if isinstance(values, (str, int)) or values is None:
            values = [values]
        bad = [
            v for v in values if not re.fullmatch(check["pattern"], str(v if v is not None else ""))
        ]
        if bad:
            shown = ", ".join(json.dumps(str(v), ensure_ascii=False) for v in bad)
            problems.append(f"{name} ({shown}) must be {check['must']}")
    return problems


def is_time_zone(name: str) -> bool:
    """Whether the controller's time zone database knows the name (as Django will on the host).
    A controller without a time zone database cannot tell: the name passes."""
    try:
        import zoneinfo

        known = zoneinfo.available_timezones()
    except Exception:  # noqa: BLE001 - no database at all: nothing to compare with
        return True
    return not known or name in known


def silent_nodes(ping_output: str, nodes: Iterable[str]) -> list[str]:
    """The nodes that did not answer in the output of `celery inspect ping` ("-> NODE: OK").
    Celery exits 0 when any node answers, so each one is looked for."""
    answered = set(re.findall(r"^->\s+(\S+):\s+OK\b", ping_output or "", re.MULTILINE))
    return [node for node in nodes if node not in answered]


def unit_states(names: Iterable[str], state: str, enabled: bool) -> list[dict]:
    """The entries django_celery_services takes: each unit with the same state and enablement."""
    return [{"name": name, "state": state, "enabled": bool(enabled)} for name in names]


def handlers_for(files: Iterable[Mapping], changed: Iterable[str]) -> list[str]:
    """The handlers named by the entries of django_celery_files whose file changed, each once."""
    changed = set(changed)
    found = []
    for entry in files:
        if entry["dest"] in changed:
            for handler in entry.get("notify", []):
                if handler not in found:
                    found.append(handler)
    return found


def env_values(content: str) -> dict:
    """The variables of an environment file the role wrote (values quoted for sh and systemd)."""
    values = {}
    for line in content.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        name, _, raw = line.partition("=")
        words = shlex.split(raw)
        values[name.strip()] = words[0] if words else ""
    return values


def url_password(url: str) -> str:
    """The password in a URL (percent-decoded), or '' when it has none."""
    return unquote(urlsplit(url).password or "") if url else ""


def passwords_in_use(hosts: Iterable[str], hostvars: Mapping, variable: str, current: str) -> list:
    """The passwords in the URL `variable` of the environment each host's services run with
    (read by tasks/settings.yml into _django_celery_running_env), other than `current`."""
    found = []
    for host in hosts:
        running = (hostvars.get(host) or {}).get("_django_celery_running_env") or {}
        password = url_password(running.get(variable, ""))
        if password and password != current and password not in found:
            found.append(password)
    return found


def credential_login(
    hosts: Iterable[str], hostvars: Mapping, variable: str, logins: Sequence[str], password: str
) -> dict:
    """Which of a user's two logins (RabbitMQ or PostgreSQL: the user, and its alternate) the
    services get `password` with, and which logins must keep working: {"login", "keep"}.

    A server that holds one password per user cannot accept the old and the new one at once, so
    a new password goes to the login no host runs with (the hosts still on the other keep it,
    with its old password, until their batch restarts); a password the fleet already runs keeps
    its login. Read from the URL `variable` of the environment each host's services run with
    (tasks/settings.yml). Logins in neither list are retired (no host runs with them)."""
    running: dict[str, set] = {}
    for host in hosts:
        env = (hostvars.get(host) or {}).get("_django_celery_running_env") or {}
        url = urlsplit(env.get(variable, "") or "")
        user = unquote(url.username or "")
        if user in logins:
            running.setdefault(user, set()).add(unquote(url.password or ""))
    matching = [login for login in logins if password in running.get(login, set())]
    free = [login for login in logins if login not in running]
    if matching:
        login = matching[0]
    elif free:
        login = free[0]
    else:
        raise AnsibleFilterError(
            f"the fleet's services run with both logins ({', '.join(logins)}) and neither has the "
            "new password: a previous password change has not reached every host. Finish it "
            "first (run again with the password it set), then change the password."
        )
    return {"login": login, "keep": [name for name in logins if name == login or name in running]}


def secret_key_previous(running: Mapping, new_key: str) -> str:
    """The key kept as a fallback after a run: the one the host ran with when SECRET_KEY changes
    (so what it signed stays valid), else the one kept before; '' if none. Only this key is
    carried from run to run: the operator's own fallbacks come from the inventory each time."""
    if running.get("DJANGO_SECRET_KEY") and running["DJANGO_SECRET_KEY"] != new_key:
        return running["DJANGO_SECRET_KEY"]
    previous = running.get("DJANGO_SECRET_KEY_PREVIOUS", "")
    return previous if previous != new_key else ""


def requirements_file_digest(path: str) -> str:
    """On the controller: digest of a requirements file and every file it includes (the same
    digest the django_celery_requirements module gives on a host)."""
    if not os.path.isfile(path):
        raise AnsibleFilterError(f"the requirements file {path} does not exist")
    return requirements_digest(path)


# The lowest Python each Django feature release supports (Django's own tables).
DJANGO_PYTHON = {(4, 2): (3, 8), (5, 0): (3, 10), (5, 1): (3, 10), (5, 2): (3, 10), (6, 0): (3, 12)}
_DJANGO_PIN = re.compile(r"^django\s*(?:\[[^]]*\])?\s*(?:==|>=|~=|===)\s*([0-9]+)\.([0-9]+)", re.I)
_REQUIRES_PYTHON = re.compile(r"^\s*(?:>=|~=|==)\s*([0-9]+)\.([0-9]+)")


def python_requirement(project_dir: str, requirements_file: str, explicit: str = "") -> dict:
    """The lowest Python a project needs and why: {"version": "3.12", "reason": ...}, or {}.

    From, in order: the operator's explicit value; the project's pyproject.toml requires-python;
    the lowest Django its requirements files admit (Django 6 needs 3.12). Only what can be
    read on the controller (a path source); {} when nothing says.
    """
    if explicit:
        major, minor = (int(part) for part in str(explicit).split(".")[:2])
        return {"version": f"{major}.{minor}", "reason": "django_celery_python_requires"}
    found: list[tuple[tuple[int, int], str]] = []
    pyproject = os.path.join(project_dir, "pyproject.toml")
    if os.path.isfile(pyproject):
        with open(pyproject, "rb") as handle:
            spec = (tomllib.load(handle).get("project") or {}).get("requires-python") or ""
        for clause in spec.split(","):
            match = _REQUIRES_PYTHON.match(clause)
            if match:
                found.append(
                    ((int(match[1]), int(match[2])), f"requires-python {spec!r} in pyproject.toml")
                )
    top = os.path.join(project_dir, requirements_file)
    for path in requirement_files(top) if os.path.isfile(top) else []:
        for line in read_lines(path):
            match = _DJANGO_PIN.match(line.strip())
            if not match:
                continue
            django = (int(match[1]), int(match[2]))
            needs = max(
                (py for release, py in DJANGO_PYTHON.items() if release <= django), default=None
            )
            if needs:
                name = os.path.relpath(path, project_dir)
                found.append((needs, f"{line.split('#')[0].strip()} in {name}"))
    if not found:
        return {}
    version, reason = max(found)
    return {"version": f"{version[0]}.{version[1]}", "reason": reason}


def scrape_targets(
    roles: Mapping[str, Iterable[str]],
    hostvars: Mapping,
    multi_host: bool,
    ports: Mapping,
    paths: Mapping | None = None,
    params: Mapping | None = None,
) -> list:
    """Prometheus scrape jobs for the fleet: {job: [hosts]} (node: every host, redis: the broker
    hosts, postgres: the database hosts, flower: the beat host) becomes one job each, a target per
    host at its private address (loopback on a single host) and the job's port (ports[job]),
    labelled instance=<inventory name>; paths[job], if given, is the job's metrics path, and
    params[job] its URL parameters ({name: [values]})."""
    jobs = []
    for job, hosts in roles.items():
        targets = []
        for host in hosts:
            address = private_address(hostvars[host]) if multi_host else LOOPBACK
            targets.append({"targets": [f"{address}:{ports[job]}"], "labels": {"instance": host}})
        if targets:
            path = (paths or {}).get(job)
            query = (params or {}).get(job)
            jobs.append(
                {
                    "job_name": job,
                    **({"metrics_path": path} if path else {}),
                    **({"params": query} if query else {}),
                    "static_configs": targets,
                }
            )
    return jobs


def pool_queues(worker_pools: Iterable[Mapping]) -> list[str]:
    """The queues a host's worker pools consume, each once, in order (a pool without queues
    consumes Celery's own, celery)."""
    queues: list[str] = []
    for pool in worker_pools:
        for queue in pool.get("queues") or ["celery"]:
            if queue not in queues:
                queues.append(queue)
    return queues


def fleet_queues(hosts: Iterable[str], hostvars: Mapping, project: str = "") -> list[str]:
    """Every queue a worker pool of the fleet consumes, each once, in the order first seen. A
    host of this run has recorded its project's queues (_django_celery_queues, validate.yml:
    hostvars hold neither role defaults nor play vars); for any other host the inventory's
    django_celery_worker_pools, or the role's default pool (the queue celery)."""
    queues: list[str] = []
    for host in hosts:
        host_vars = hostvars[host]
        recorded = (host_vars.get("_django_celery_queues") or {}).get(project)
        if recorded is None:
            recorded = pool_queues(host_vars.get("django_celery_worker_pools") or [{}])
        for queue in recorded:
            if queue not in queues:
                queues.append(queue)
    return queues


def htpasswd_ssha(user: str, password: str, salt: str) -> str:
    """An htpasswd line nginx's auth_basic reads: {SSHA}, base64 of SHA-1(password + salt) + salt.
    The salt comes from the caller: stable, so the file does not change from run to run."""
    raw_salt = salt.encode()[:16]
    digest = hashlib.sha1(password.encode() + raw_salt, usedforsecurity=False).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + raw_salt).decode()}"


class FilterModule:
    def filters(self):
        return {
            "django_celery_env_values": env_values,
            "django_celery_url_password": url_password,
            "django_celery_passwords_in_use": passwords_in_use,
            "django_celery_credential_login": credential_login,
            "django_celery_secret_key_previous": secret_key_previous,
            "django_celery_constraints": constraints,
            "django_celery_requirements_digest": requirements_file_digest,
            "django_celery_python_requirement": python_requirement,
            "django_celery_duplicates": duplicates,
            "django_celery_fleet_addresses": fleet_addresses,
            "django_celery_group_addresses": group_addresses,
            "django_celery_missing_archives": missing_archives,
            "django_celery_missing_packages": missing_packages,
            "django_celery_python_targets": python_targets,
            "django_celery_stale_hba_sources": stale_hba_sources,
            "django_celery_invalid_values": invalid_values,
            "django_celery_is_time_zone": is_time_zone,
            "django_celery_pools": pools,
            "django_celery_rabbitmq_listeners": rabbitmq_listeners,
            "django_celery_rabbitmq_nodes": rabbitmq_nodes,
            "django_celery_broker_addresses": broker_addresses,
            "django_celery_rabbitmq_majority_runs": rabbitmq_majority_runs,
            "django_celery_rabbitmq_partitioned_nodes": rabbitmq_partitioned_nodes,
            "django_celery_rabbitmq_peer_listing": rabbitmq_peer_listing,
            "django_celery_debian_releases": debian_releases,
            "django_celery_rabbitmq_shared": rabbitmq_shared,
            "django_celery_rabbitmq_quorum_definitions": rabbitmq_quorum_definitions,
            "django_celery_rabbitmq_queue_type_conflicts": rabbitmq_queue_type_conflicts,
            "django_celery_silent_nodes": silent_nodes,
            "django_celery_unit_states": unit_states,
            "django_celery_handlers_for": handlers_for,
            "django_celery_worker_nodes": worker_nodes,
            "django_celery_scrape_targets": scrape_targets,
            "django_celery_fleet_queues": fleet_queues,
            "django_celery_pool_queues": pool_queues,
            "django_celery_private_address": private_address,
            "django_celery_htpasswd_ssha": htpasswd_ssha,
        }
