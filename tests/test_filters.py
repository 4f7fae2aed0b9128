"""The role's filter plugins, called with plain data as Ansible calls them with hostvars."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
PLUGIN = PLUGINS / "filter/django_celery.py"
# As Ansible finds it in the collection, for the filters that share it with a module.
_REQUIREMENTS = "ansible_collections.django_celery.fleet.plugins.module_utils.django_celery_pip"
_spec = importlib.util.spec_from_file_location(
    _REQUIREMENTS, PLUGINS / "module_utils/django_celery_pip.py"
)
sys.modules[_REQUIREMENTS] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules[_REQUIREMENTS])
spec = importlib.util.spec_from_file_location("django_celery_filters", PLUGIN)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)

HOSTVARS = {
    "broker": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.2"}, "nodename": "broker"}},
    "web": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.3"}, "nodename": "web"}},
    "worker1": {
        "django_celery_private_address": "192.168.1.4",
        "ansible_facts": {"default_ipv4": {"address": "10.0.0.4"}, "nodename": "worker1.example"},
    },
    "worker2": {
        "ansible_facts": {"default_ipv4": {"address": "10.0.0.5"}, "nodename": "worker2"},
        "django_celery_worker_pools": [{"name": "gpu"}],
    },
    "no-facts": {"inventory_hostname": "no-facts"},
}


def test_fleet_addresses_prefer_the_private_address_over_the_default_route():
    hosts = ["broker", "web", "worker1", "worker2"]
    assert filters.fleet_addresses(hosts, HOSTVARS) == [
        "10.0.0.2",
        "10.0.0.3",
        "192.168.1.4",
        "10.0.0.5",
    ]


def test_fleet_addresses_list_a_shared_address_once():
    hostvars = {**HOSTVARS, "web": {"django_celery_private_address": "10.0.0.2"}}
    assert filters.fleet_addresses(["broker", "web"], hostvars) == ["10.0.0.2"]


def test_a_host_without_facts_or_private_address_is_named_in_the_error():
    with pytest.raises(ValueError, match="no-facts has no django_celery_private_address"):
        filters.fleet_addresses(["broker", "no-facts"], HOSTVARS)


def test_group_addresses_are_loopback_on_a_host_of_the_group():
    groups = {"brokers": ["broker"], "databases": ["broker"]}
    found = filters.group_addresses(["brokers", "databases"], groups, HOSTVARS, "broker")
    assert found == {"brokers": "127.0.0.1", "databases": "127.0.0.1"}


def test_group_addresses_point_other_hosts_at_the_groups_first_host():
    groups = {"brokers": ["worker1", "broker"], "databases": ["broker"]}
    found = filters.group_addresses(["brokers", "databases"], groups, HOSTVARS, "web")
    assert found == {"brokers": "192.168.1.4", "databases": "10.0.0.2"}


def test_group_addresses_are_loopback_when_the_group_is_missing_or_empty():
    found = filters.group_addresses(["brokers", "databases"], {"databases": []}, HOSTVARS, "web")
    assert found == {"brokers": "127.0.0.1", "databases": "127.0.0.1"}


def test_pools_fill_in_the_defaults():
    assert filters.pools([{"name": "default"}], 4) == [
        {
            "name": "default",
            "queues": ["celery"],
            "concurrency": 4,
            "pool": "prefork",
            "max_tasks_per_child": None,
            "max_memory_per_child": None,
            "extra_args": [],
        }
    ]


def test_pools_keep_the_values_given():
    given = {
        "name": "io",
        "queues": ["mail", "sms"],
        "concurrency": 20,
        "pool": "threads",
        "max_tasks_per_child": 100,
        "max_memory_per_child": 200000,
        "extra_args": ["--without-gossip"],
    }
    assert filters.pools([given], 4) == [given]


def test_worker_nodes_of_a_host_without_facts_are_an_error_naming_it():
    with pytest.raises(ValueError, match="no-facts has no facts in this run"):
        filters.worker_nodes(["worker2", "no-facts"], HOSTVARS, [{"name": "default"}])


def test_constraints_pin_every_installed_package():
    installed = [{"name": "Django", "version": "5.2.19"}, {"name": "celery", "version": "5.7.0"}]
    assert filters.constraints(installed) == "Django==5.2.19\ncelery==5.7.0\n"


def test_worker_nodes_name_each_pool_at_each_worker_hosts_node_name():
    nodes = filters.worker_nodes(
        ["worker1", "worker2"], HOSTVARS, [{"name": "default"}, {"name": "slow"}]
    )
    assert nodes == ["default@worker1.example", "gpu@worker2", "slow@worker1.example"]


def test_duplicates_lists_each_repeated_item_once():
    assert filters.duplicates(["io", "cpu", "io", "mail", "io", "cpu"]) == ["io", "cpu"]


def test_duplicates_of_distinct_items_are_none():
    assert filters.duplicates(["io", "cpu"]) == []


NEEDS = [
    {"names": ["gunicorn"], "pin": "gunicorn==27.0.1"},
    {"names": ["redis"], "pin": "redis==8.1.0"},
    {"names": ["psycopg", "psycopg2", "psycopg2-binary"], "pin": "psycopg[binary]==3.3.9"},
    {"names": ["django-celery-beat"], "pin": "django-celery-beat==2.9.0"},
]


def test_missing_packages_are_the_pins_of_what_the_virtualenv_lacks():
    installed = [{"name": "Django", "version": "5.2"}, {"name": "celery", "version": "5.7.0"}]
    assert filters.missing_packages(NEEDS, installed) == [need["pin"] for need in NEEDS]


def test_the_projects_own_packages_win_whatever_their_version_or_spelling():
    installed = [
        {"name": "gunicorn", "version": "22.0.0"},
        {"name": "psycopg2_binary", "version": "2.9.9"},
        {"name": "Django_Celery.Beat", "version": "2.5.0"},
    ]
    assert filters.missing_packages(NEEDS, installed) == ["redis==8.1.0"]


def test_python_targets_list_each_version_and_architecture_once():
    def facts(major, minor, arch):
        python = {"version": {"major": major, "minor": minor}}
        return {"ansible_facts": {"python": python, "architecture": arch}}

    hostvars = {
        "a": facts(3, 11, "x86_64"),
        "b": facts(3, 13, "x86_64"),
        "c": facts(3, 11, "x86_64"),
    }
    assert filters.python_targets(["a", "b", "c"], hostvars) == [
        {"python": "3.11", "arch": "x86_64", "name": "cp311-x86_64"},
        {"python": "3.13", "arch": "x86_64", "name": "cp313-x86_64"},
    ]


PG_HBA = """
local   all             postgres                                peer
host    all             all             127.0.0.1/32            scram-sha-256
host    djangoapp       djangoapp       10.0.0.3/32             scram-sha-256
host    djangoapp       djangoapp       10.0.0.9/32             scram-sha-256  # gone
host    shop            shop            10.0.0.9/32             scram-sha-256
host    djangoapp       djangoapp       10.0.0.8/32             md5
host    djangoapp       djangoapp_alt   10.0.0.3/32             scram-sha-256
host    djangoapp       djangoapp_alt   10.0.0.7/32             scram-sha-256
"""


def test_stale_hba_sources_are_the_projects_lines_of_hosts_that_left():
    stale = filters.stale_hba_sources(PG_HBA, "djangoapp", "djangoapp", ["10.0.0.2", "10.0.0.3"])
    assert stale == ["10.0.0.9/32"]


def test_stale_hba_sources_cover_each_of_the_comma_separated_logins():
    fleet = ["10.0.0.2", "10.0.0.3"]
    stale = filters.stale_hba_sources(PG_HBA, "djangoapp", "djangoapp,djangoapp_alt", fleet)
    assert stale == ["10.0.0.9/32", "10.0.0.7/32"]


def test_rabbitmq_shared_takes_the_longest_consumer_timeout_and_every_listener_once():
    needs = [
        {"consumer_timeout_ms": 600000, "listeners": ["127.0.0.1:5672"]},
        {"consumer_timeout_ms": 7200000, "listeners": ["127.0.0.1:5672", "10.0.0.2:5672"]},
        {"consumer_timeout_ms": 400000, "listeners": ["127.0.0.1:5672"]},
    ]
    assert filters.rabbitmq_shared(needs) == {
        "consumer_timeout_ms": 7200000,
        "listeners": ["10.0.0.2:5672", "127.0.0.1:5672"],
        "prometheus": "",
    }
    assert filters.rabbitmq_shared(list(reversed(needs))) == filters.rabbitmq_shared(needs)


def test_rabbitmq_shared_gives_the_prometheus_address_any_project_monitors():
    needs = [
        {"consumer_timeout_ms": 1, "listeners": [], "prometheus": ""},
        {"consumer_timeout_ms": 1, "listeners": [], "prometheus": "10.0.0.2"},
        {"consumer_timeout_ms": 1, "listeners": []},
        {"consumer_timeout_ms": 1, "listeners": [], "prometheus": "10.0.0.2"},
    ]
    assert filters.rabbitmq_shared(needs)["prometheus"] == "10.0.0.2"


def test_rabbitmq_shared_refuses_two_prometheus_addresses_on_one_host():
    needs = [
        {"consumer_timeout_ms": 1, "listeners": [], "prometheus": "127.0.0.1"},
        {"consumer_timeout_ms": 1, "listeners": [], "prometheus": "10.0.0.2"},
    ]
    with pytest.raises(ValueError, match=r"different addresses \(10.0.0.2, 127.0.0.1\)"):
        filters.rabbitmq_shared(needs)


def test_rabbitmq_shared_refuses_an_empty_list():
    with pytest.raises(ValueError, match="this project's own must be among them"):
        filters.rabbitmq_shared([])


def test_rabbitmq_listeners_reads_the_tcp_listeners_of_a_config_file():
    conf = (
        "# comment\nlisteners.tcp.1 = 127.0.0.1:5672\nlisteners.tcp.2 = 10.0.0.2:5672\n"
        "consumer_timeout = 600000\nloopback_users.guest = true\n"
    )
    assert filters.rabbitmq_listeners(conf) == ["127.0.0.1:5672", "10.0.0.2:5672"]
    assert filters.rabbitmq_listeners("") == []


def test_rabbitmq_listeners_include_the_prometheus_plugins_address():
    conf = (
        "listeners.tcp.1 = 127.0.0.1:5672\n"
        "prometheus.tcp.ip = 10.0.0.2\nprometheus.tcp.port = 15692\n"
    )
    assert filters.rabbitmq_listeners(conf) == ["127.0.0.1:5672", "10.0.0.2"]


def test_invalid_values_names_each_failing_variable_with_its_bad_values():
    checks = {
        "queues": {
            "values": ["celery", "bad queue", "ok.1"],
            "pattern": r"[a-z0-9.]+",
            "must": "x",
        },
        "module": {"values": "proj.settings", "pattern": r"[a-z.]+", "must": "a module"},
        "empty list": {"values": [], "pattern": r"never", "must": "y"},
        "port": {"values": 6379, "pattern": r"[0-9]+", "must": "digits"},
        "quote": {"values": ['it"s'], "pattern": r"[a-z]+", "must": "letters"},
    }
    assert filters.invalid_values(checks) == [
        'queues ("bad queue") must be x',
        'quote ("it\\"s") must be letters',
    ]


def test_the_pattern_must_match_the_whole_value():
    checks = {"module": {"values": "proj.settings; rm", "pattern": r"[a-z.]+", "must": "m"}}
    assert filters.invalid_values(checks) == ['module ("proj.settings; rm") must be m']


def test_time_zone_names_are_checked_against_the_tz_database():
    assert filters.is_time_zone("UTC") and filters.is_time_zone("Europe/Paris")
    assert not filters.is_time_zone("Mars/Olympus_Mons")


# What `celery inspect ping` printed with two of three pools up (celery 5.6).
PING_OUTPUT = """->  default@lab: OK
        pong
->  slow@lab: OK
        pong

2 nodes online.
"""


def test_silent_nodes_are_the_ones_missing_from_the_ping_answers():
    nodes = ["default@lab", "slow@lab", "priority@lab"]
    assert filters.silent_nodes(PING_OUTPUT, nodes) == ["priority@lab"]


def test_a_node_of_another_host_with_the_same_pool_is_not_an_answer():
    assert filters.silent_nodes(PING_OUTPUT, ["default@lab2"]) == ["default@lab2"]


def test_no_output_means_every_node_is_silent():
    assert filters.silent_nodes("", ["default@lab"]) == ["default@lab"]
    assert filters.silent_nodes(None, ["default@lab"]) == ["default@lab"]


def test_unit_states_give_each_unit_the_same_state():
    assert filters.unit_states(["a.service", "b.timer"], "stopped", False) == [
        {"name": "a.service", "state": "stopped", "enabled": False},
        {"name": "b.timer", "state": "stopped", "enabled": False},
    ]


def test_handlers_for_names_only_the_handlers_of_changed_files_each_once():
    files = [
        {"dest": "/etc/a", "notify": ["Restart workers"]},
        {"dest": "/etc/b", "notify": ["Restart beat", "Restart workers"]},
        {"dest": "/etc/c", "notify": ["Restart web"]},
        {"dest": "/etc/d"},
    ]
    assert filters.handlers_for(files, ["/etc/b", "/etc/a", "/etc/d"]) == [
        "Restart workers",
        "Restart beat",
    ]
    assert filters.handlers_for(files, []) == []


def test_missing_archives_are_the_wheelhouses_not_on_the_controller(tmp_path):
    (tmp_path / "cp311-x86_64.tar.gz").write_bytes(b"")
    targets = [{"name": "cp311-x86_64"}, {"name": "cp313-x86_64"}]
    assert filters.missing_archives(targets, str(tmp_path)) == [
        str(tmp_path / "cp313-x86_64.tar.gz")
    ]


# An environment file as app.env.j2 writes it (values through Jinja's quote filter).
ENV_FILE = """# comment
DJANGO_SECRET_KEY='k3y with '"'"'quote'"'"' $ # é'
DJANGO_SECRET_KEY_FALLBACKS='["old-key"]'
CELERY_BROKER_URL='redis://app:p%40ss%2Fw0rd@127.0.0.1:6379/0'
PYTHONUNBUFFERED=1
EMPTY=
"""


def test_env_values_reads_back_what_the_role_quoted():
    values = filters.env_values(ENV_FILE)
    assert values["DJANGO_SECRET_KEY"] == "k3y with 'quote' $ # é"
    assert values["PYTHONUNBUFFERED"] == "1"
    assert values["EMPTY"] == ""
    assert "# comment" not in values


def test_url_password_is_percent_decoded():
    url = filters.env_values(ENV_FILE)["CELERY_BROKER_URL"]
    assert filters.url_password(url) == "p@ss/w0rd"
    assert filters.url_password("redis://127.0.0.1:6379/0") == ""
    assert filters.url_password("") == ""


def test_passwords_in_use_are_the_fleets_other_running_passwords_each_once():
    running = {"_django_celery_running_env": filters.env_values(ENV_FILE)}
    hostvars = {"web": running, "worker": running, "broker": {}, "new": {}}
    hosts = ["web", "worker", "broker", "new", "absent"]
    assert filters.passwords_in_use(hosts, hostvars, "CELERY_BROKER_URL", "new") == ["p@ss/w0rd"]
    assert filters.passwords_in_use(hosts, hostvars, "CELERY_BROKER_URL", "p@ss/w0rd") == []


LOGINS = ["app", "app_alt"]


def running_as(user: str, password: str) -> dict:
    url = f"postgresql://{user}:{password.replace('/', '%2F')}@db:5432/app"
    return {"_django_celery_running_env": {"DATABASE_URL": url}}


def login(hostvars: dict, password: str) -> dict:
    hosts = list(hostvars) + ["not-yet-provisioned"]
    return filters.credential_login(hosts, hostvars, "DATABASE_URL", LOGINS, password)


def test_a_first_deploy_uses_the_user_itself():
    assert login({"web": {}, "db": {}}, "new") == {"login": "app", "keep": ["app"]}


def test_a_password_the_fleet_runs_with_keeps_its_login():
    hostvars = {"web": running_as("app_alt", "p/w"), "worker": running_as("app_alt", "p/w")}
    assert login(hostvars, "p/w") == {"login": "app_alt", "keep": ["app_alt"]}


def test_a_new_password_goes_to_the_login_no_host_runs_and_the_running_one_is_kept():
    hostvars = {"web": running_as("app", "old"), "worker": running_as("app", "old")}
    assert login(hostvars, "new") == {"login": "app_alt", "keep": ["app", "app_alt"]}


def test_a_rotation_half_rolled_out_goes_on_with_the_login_it_chose():
    hostvars = {"web": running_as("app", "old"), "worker": running_as("app_alt", "new")}
    assert login(hostvars, "new") == {"login": "app_alt", "keep": ["app", "app_alt"]}


def test_a_second_rotation_before_the_first_reached_every_host_is_refused():
    hostvars = {"web": running_as("app", "old"), "worker": running_as("app_alt", "new")}
    with pytest.raises(AnsibleFilterError, match="has not reached every host"):
        login(hostvars, "newer")


def test_a_user_other_than_the_two_logins_is_not_counted_as_running():
    hostvars = {"web": running_as("someone", "old")}
    assert login(hostvars, "new") == {"login": "app", "keep": ["app"]}


def test_a_changed_secret_key_keeps_the_running_one_as_previous():
    running = filters.env_values(ENV_FILE)
    assert filters.secret_key_previous(running, "new") == "k3y with 'quote' $ # é"


def test_an_unchanged_secret_key_keeps_the_previous_key_it_had_and_nothing_else():
    running = {**filters.env_values(ENV_FILE), "DJANGO_SECRET_KEY_PREVIOUS": "older"}
    key = running["DJANGO_SECRET_KEY"]
    # The operator's old fallbacks ("old-key" in the file) are not carried over.
    assert filters.secret_key_previous(running, key) == "older"


def test_a_first_deploy_has_no_previous_key():
    assert filters.secret_key_previous({}, "new") == ""


# --- requirements files pip reads ---------------------------------------------------------


def _requirements(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements.txt").write_text("-r requirements/prod.txt\nDjango==5.2.19\n")
    (tmp_path / "requirements/prod.txt").write_text(
        "--requirement base.txt  # shared\n-c ../constraints.txt\ngunicorn==27.0.1\n"
    )
    (tmp_path / "requirements/base.txt").write_text("-r prod.txt\ncelery==5.7.0\n")
    (tmp_path / "constraints.txt").write_text("kombu==5.7.0\n")
    return tmp_path / "requirements.txt"


def test_every_included_and_constraint_file_is_read_relative_to_its_includer(tmp_path):
    top = _requirements(tmp_path)
    names = [
        Path(p).relative_to(tmp_path).as_posix()
        for p in sys.modules[_REQUIREMENTS].requirement_files(str(top))
    ]
    assert names == [
        "requirements.txt",
        "requirements/prod.txt",
        "requirements/base.txt",
        "constraints.txt",
    ]


def test_a_package_added_to_an_included_file_changes_the_digest(tmp_path):
    top = _requirements(tmp_path)
    before = filters.requirements_file_digest(str(top))
    with open(tmp_path / "requirements/base.txt", "a") as handle:
        handle.write("requests==2.33.0\n")
    assert filters.requirements_file_digest(str(top)) != before


def test_an_unchanged_tree_gives_the_same_digest_wherever_it_lies(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _requirements(tmp_path / "a"), _requirements(tmp_path / "b")
    assert filters.requirements_file_digest(str(first)) == filters.requirements_file_digest(
        str(second)
    )


def test_a_missing_requirements_file_is_refused_by_name(tmp_path):
    with pytest.raises(AnsibleFilterError, match="nope.txt does not exist"):
        filters.requirements_file_digest(str(tmp_path / "nope.txt"))


# --- the Python a project needs -------------------------------------------------------------


def test_django_6_in_an_included_file_needs_python_3_12(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "base.txt").write_text("Django==6.0.1  # LTS later\ncelery==5.7.0\n")
    assert filters.python_requirement(str(tmp_path), "requirements.txt") == {
        "version": "3.12",
        "reason": "Django==6.0.1 in base.txt",
    }


def test_django_5_2_needs_python_3_10(tmp_path):
    (tmp_path / "requirements.txt").write_text("django>=5.2,<6\n")
    assert filters.python_requirement(str(tmp_path), "requirements.txt")["version"] == "3.10"


def test_requires_python_wins_when_higher(tmp_path):
    (tmp_path / "requirements.txt").write_text("Django==5.2.19\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.13"\n')
    assert filters.python_requirement(str(tmp_path), "requirements.txt") == {
        "version": "3.13",
        "reason": "requires-python '>=3.13' in pyproject.toml",
    }


def test_the_operators_value_overrides_what_the_project_says(tmp_path):
    (tmp_path / "requirements.txt").write_text("Django==6.0.1\n")
    assert filters.python_requirement(str(tmp_path), "requirements.txt", "3.11") == {
        "version": "3.11",
        "reason": "django_celery_python_requires",
    }


def test_a_project_that_says_nothing_needs_nothing(tmp_path):
    (tmp_path / "requirements.txt").write_text("celery==5.7.0\n")
    assert filters.python_requirement(str(tmp_path), "requirements.txt") == {}


def test_a_file_that_includes_none_keeps_the_digest_earlier_versions_recorded(tmp_path):
    """Its plain sha256, as the virtualenv stamps of earlier releases of the role hold it."""
    top = tmp_path / "requirements.txt"
    top.write_text("Django==5.2.19\n")
    assert (
        filters.requirements_file_digest(str(top)) == hashlib.sha256(top.read_bytes()).hexdigest()
    )


# --- Monitoring ---------------------------------------------------------------------------------


PORTS = {"node": 9100, "redis": 9121, "postgres": 9187}


def test_scrape_targets_put_each_host_at_its_private_address_with_its_name():
    hostvars = {
        "broker": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.2"}}},
        "web": {"django_celery_private_address": "10.0.0.3"},
    }
    jobs = filters.scrape_targets(
        {"node": ["broker", "web"], "redis": ["broker"], "postgres": []}, hostvars, True, PORTS
    )
    assert jobs == [
        {
            "job_name": "node",
            "static_configs": [
                {"targets": ["10.0.0.2:9100"], "labels": {"instance": "broker"}},
                {"targets": ["10.0.0.3:9100"], "labels": {"instance": "web"}},
            ],
        },
        {
            "job_name": "redis",
            "static_configs": [{"targets": ["10.0.0.2:9121"], "labels": {"instance": "broker"}}],
        },
    ]


def test_scrape_targets_of_a_single_host_are_on_loopback():
    jobs = filters.scrape_targets({"node": ["lab"]}, {"lab": {}}, False, PORTS)
    assert jobs[0]["static_configs"][0]["targets"] == ["127.0.0.1:9100"]


def test_scrape_targets_give_a_job_its_metrics_path_when_one_is_named():
    jobs = filters.scrape_targets(
        {"node": ["lab"], "flower": ["lab"]},
        {"lab": {}},
        False,
        {**PORTS, "flower": 5555},
        {"flower": "/flower/metrics"},
    )
    assert [(job["job_name"], job.get("metrics_path")) for job in jobs] == [
        ("node", None),
        ("flower", "/flower/metrics"),
    ]


def test_scrape_targets_give_a_job_its_url_parameters_when_some_are_named():
    jobs = filters.scrape_targets(
        {"node": ["lab"], "rabbitmq": ["lab"]},
        {"lab": {}},
        False,
        {**PORTS, "rabbitmq": 15692},
        {"rabbitmq": "/metrics/detailed"},
        {"rabbitmq": {"vhost": ["/app"], "family": ["queue_coarse_metrics"]}},
    )
    assert [job.get("params") for job in jobs] == [
        None,
        {"vhost": ["/app"], "family": ["queue_coarse_metrics"]},
    ]


def test_fleet_queues_lists_every_pools_queue_once_and_celery_for_a_pool_without():
    hostvars = {
        "w1": {"django_celery_worker_pools": [{"name": "a", "queues": ["celery", "slow"]}]},
        "w2": {
            "django_celery_worker_pools": [{"name": "b", "queues": ["slow", "mail"]}, {"name": "c"}]
        },
    }
    assert filters.fleet_queues(["w1", "w2"], hostvars) == ["celery", "slow", "mail"]


def test_fleet_queues_prefer_what_each_host_recorded_for_the_project():
    """hostvars hold neither role defaults nor play vars: a host of the run records its own
    project's queues, one entry per project; the other hosts fall back to the inventory."""
    hostvars = {
        "w1": {
            "django_celery_worker_pools": [{"name": "inventory", "queues": ["inventory"]}],
            "_django_celery_queues": {"app": ["celery", "slow"], "shop": ["shop"]},
        },
        "w2": {"_django_celery_queues": {"app": []}},
        "w3": {},
    }
    assert filters.fleet_queues(["w1", "w2"], hostvars, "app") == ["celery", "slow"]
    assert filters.fleet_queues(["w1"], hostvars, "shop") == ["shop"]
    assert filters.fleet_queues(["w1"], hostvars, "other") == ["inventory"]
    assert filters.fleet_queues(["w3"], hostvars, "app") == ["celery"]


def test_htpasswd_ssha_is_a_salted_sha1_nginx_can_check():
    line = filters.htpasswd_ssha("monitor", "pä$s w#rd", "0123456789abcdef")
    user, scheme_and_hash = line.split(":", 1)
    raw = base64.b64decode(scheme_and_hash.removeprefix("{SSHA}"))
    assert (user, scheme_and_hash[:6]) == ("monitor", "{SSHA}")
    assert raw[20:] == b"0123456789abcdef"
    assert raw[:20] == hashlib.sha1("pä$s w#rd".encode() + raw[20:]).digest()
    assert filters.htpasswd_ssha("monitor", "other", "0123456789abcdef") != line


def celery_queues_as_declared(*names: str) -> dict:
    """The queues a worker of the deploy settings' quorum mode declares (`-Q NAME,...`): kombu's
    own Queue objects, from a Celery app with those settings."""
    from celery import Celery

    app = Celery(set_as_current=False)
    app.conf.update(
        task_default_queue_type="quorum",
        task_create_missing_queue_type="quorum",
        task_default_exchange_type="topic",
        task_create_missing_queue_exchange_type="topic",
    )
    queues = app.amqp.queues
    return {name: queues[name] for name in names}


def test_quorum_definitions_declare_each_queue_as_celery_itself_declares_it():
    """A worker redeclares its queues at start: anything but the same type, arguments, exchange
    and binding and RabbitMQ refuses it (PRECONDITION_FAILED, inequivalent arg)."""
    definitions = filters.rabbitmq_quorum_definitions(["celery", "slow"], "app")
    queues = {q["name"]: q for q in definitions["queues"]}
    exchanges = {e["name"]: e for e in definitions["exchanges"]}
    bindings = {(b["source"], b["destination"]): b for b in definitions["bindings"]}
    for name, queue in celery_queues_as_declared("celery", "slow").items():
        assert queues[name]["arguments"] == queue.queue_arguments
        assert queues[name]["durable"] is queue.durable and queues[name]["auto_delete"] is False
        assert exchanges[queue.exchange.name]["type"] == queue.exchange.type
        assert exchanges[queue.exchange.name]["durable"] is queue.exchange.durable
        assert bindings[(queue.exchange.name, name)]["routing_key"] == queue.routing_key
        assert queues[name]["vhost"] == "app"


def test_quorum_definitions_give_the_dead_letter_queue_a_fanout_exchange():
    definitions = filters.rabbitmq_quorum_definitions(["celery"], "app")
    exchanges = {e["name"]: e["type"] for e in definitions["exchanges"]}
    queues = {q["name"]: q["arguments"] for q in definitions["queues"]}
    assert exchanges == {"celery": "topic", "dead_letter": "fanout"}
    assert queues["dead_letter"] == {"x-queue-type": "quorum"}


@pytest.mark.parametrize(
    ("queues", "message"),
    [([], "no queue to declare"), (["celery", "dead_letter"], "the name of the dead-letter queue")],
)
def test_quorum_definitions_refuse_what_cannot_work(queues, message):
    with pytest.raises(ValueError, match=message):
        filters.rabbitmq_quorum_definitions(queues, "app")


def test_queue_type_conflicts_name_the_fleets_queues_of_the_other_type_only():
    listed = json.dumps(
        [
            {"name": "celery", "type": "classic"},
            {"name": "slow", "type": "quorum"},
            {"name": "celeryev.1234", "type": "classic"},
        ]
    )
    assert filters.rabbitmq_queue_type_conflicts(listed, ["celery", "slow"], "quorum") == [
        "celery (classic)"
    ]
    assert filters.rabbitmq_queue_type_conflicts(listed, ["celery", "slow"], "classic") == [
        "slow (quorum)"
    ]
    assert filters.rabbitmq_queue_type_conflicts("", ["celery"], "quorum") == []


def test_rabbitmq_nodes_are_named_after_each_hosts_short_name_with_its_private_address():
    hostvars = {
        "b1": {"ansible_facts": {"hostname": "b1", "default_ipv4": {"address": "10.0.0.2"}}},
        "b2.example": {
            "ansible_facts": {"hostname": "b2", "default_ipv4": {"address": "10.0.0.3"}}
        },
        "b3": {"django_celery_private_address": "192.168.0.9", "ansible_facts": {"hostname": "b3"}},
    }
    assert filters.rabbitmq_nodes(["b1", "b2.example", "b3"], hostvars) == [
        {"host": "b1", "hostname": "b1", "node": "rabbit@b1", "address": "10.0.0.2"},
        {"host": "b2.example", "hostname": "b2", "node": "rabbit@b2", "address": "10.0.0.3"},
        {"host": "b3", "hostname": "b3", "node": "rabbit@b3", "address": "192.168.0.9"},
    ]


def test_rabbitmq_nodes_refuse_two_hosts_with_one_short_name():
    hostvars = {
        "a.one": {"ansible_facts": {"hostname": "node", "default_ipv4": {"address": "10.0.0.2"}}},
        "a.two": {"ansible_facts": {"hostname": "node", "default_ipv4": {"address": "10.0.0.3"}}},
    }
    with pytest.raises(AnsibleFilterError, match=r"share a short host name \(node\)"):
        filters.rabbitmq_nodes(["a.one", "a.two"], hostvars)


def test_broker_addresses_start_with_the_broker_host_itself_then_the_others_in_order():
    members = ["broker", "web", "worker2"]
    assert filters.broker_addresses(members, HOSTVARS, "web") == [
        "10.0.0.3",
        "10.0.0.5",
        "10.0.0.2",
    ]


def test_broker_addresses_of_other_hosts_hold_every_node_once_and_spread_their_first():
    members = ["broker", "web", "worker2"]
    firsts = set()
    for host in (f"app{index}" for index in range(12)):
        addresses = filters.broker_addresses(members, HOSTVARS, host)
        assert sorted(addresses) == ["10.0.0.2", "10.0.0.3", "10.0.0.5"]
        assert addresses == filters.broker_addresses(members, HOSTVARS, host)
        firsts.add(addresses[0])
    assert len(firsts) > 1


def test_rabbitmq_nodes_refuse_a_broker_host_without_facts_naming_it():
    hostvars = {"b1": {"django_celery_private_address": "10.0.0.2"}}
    with pytest.raises(AnsibleFilterError, match=r"b1 has no host name in its facts"):
        filters.rabbitmq_nodes(["b1"], hostvars)


@pytest.mark.parametrize(
    ("running", "partitions", "expected"),
    [
        (["rabbit@a", "rabbit@b", "rabbit@c"], {}, True),
        (["rabbit@a", "rabbit@b"], {}, True),
        (["rabbit@a"], {}, False),
        (["rabbit@b", "rabbit@c"], {}, False),
        (["rabbit@a", "rabbit@b", "rabbit@c"], {"rabbit@a": ["rabbit@c"]}, False),
        (["rabbit@a", "rabbit@x"], {}, False),
    ],
    ids=["all", "majority", "alone", "not-itself", "partitioned", "foreign-node"],
)
def test_a_cluster_node_goes_on_with_a_majority_running_and_no_partition(
    running, partitions, expected
):
    nodes = ["rabbit@a", "rabbit@b", "rabbit@c"]
    assert filters.rabbitmq_majority_runs(running, nodes, "rabbit@a", partitions) is expected


@pytest.mark.parametrize(
    ("partitions", "expected"),
    [
        ({}, []),
        (
            {
                "rabbit@a": ["rabbit@c"],
                "rabbit@b": ["rabbit@c"],
                "rabbit@c": ["rabbit@a", "rabbit@b"],
            },
            ["rabbit@c"],
        ),
        # Measured after a 75 s docker pause of web (RabbitMQ 3.10.8): broker recorded nothing.
        ({"rabbit@b": ["rabbit@c"], "rabbit@c": ["rabbit@a", "rabbit@b"]}, ["rabbit@c"]),
        ({"rabbit@a": ["rabbit@c"], "rabbit@b": ["rabbit@c"]}, ["rabbit@c"]),
        ({"rabbit@a": ["rabbit@c"]}, []),
        ([["rabbit@a", ["rabbit@b"]], ["rabbit@c", ["rabbit@b"]]], ["rabbit@b"]),
        (
            {
                "rabbit@a": ["rabbit@b", "rabbit@c"],
                "rabbit@b": ["rabbit@a", "rabbit@c"],
                "rabbit@c": ["rabbit@a", "rabbit@b"],
            },
            [],
        ),
    ],
    ids=[
        "none",
        "frozen-node-back",
        "frozen-node-back-seen-by-one",
        "seen-by-the-majority",
        "seen-by-one",
        "pairs",
        "no-majority-side",
    ],
)
def test_the_nodes_on_the_losing_side_of_a_recorded_partition_are_the_ones_to_restart(
    partitions, expected
):
    nodes = ["rabbit@a", "rabbit@b", "rabbit@c"]
    assert filters.rabbitmq_partitioned_nodes(partitions, nodes) == expected


def _status(rc: int, item: str, disk_nodes: list[str]) -> dict:
    return {"rc": rc, "item": item, "stdout": json.dumps({"disk_nodes": disk_nodes})}


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        # A cluster being built: no other node runs yet.
        ([{"rc": 2, "item": "b", "stdout": ""}, {"rc": 2, "item": "c", "stdout": ""}], ""),
        # A replaced host: the first peer is down too, the second lists the old node.
        (
            [
                {"rc": 69, "item": "b", "stdout": ""},
                _status(0, "c", ["rabbit@a", "rabbit@b", "rabbit@c"]),
            ],
            "c",
        ),
        # A new node the running cluster never had.
        ([_status(0, "b", ["rabbit@b", "rabbit@c"])], ""),
        ([{"rc": 0, "item": "b", "stdout": "not json"}], ""),
    ],
    ids=["new-cluster", "replaced-host", "new-node", "garbage"],
)
def test_a_blank_node_the_running_cluster_still_lists_is_a_replaced_host(results, expected):
    assert filters.rabbitmq_peer_listing(results, "rabbit@a") == expected


def test_the_debian_releases_of_the_broker_hosts_are_grouped_and_hosts_without_facts_left_out():
    hostvars = {
        "b1": {"ansible_facts": {"distribution_major_version": "12"}},
        "b2": {"ansible_facts": {"distribution_major_version": "13"}},
        "b3": {"ansible_facts": {"distribution_major_version": "12"}},
        "b4": {},
    }
    assert filters.debian_releases(["b1", "b2", "b3", "b4"], hostvars) == {
        "12": ["b1", "b3"],
        "13": ["b2"],
    }
