"""Packaging for bank_pipeline: the `bank-pipeline` console script and the `test` extra."""

from setuptools import find_namespace_packages, setup

setup(
    name="bank_pipeline",
    version="0.1.0",
    description="Import TrueLayer bank transactions and enrich them, as a Dagster pipeline.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Only the application: the tests (bank_pipeline_tests/) run from a checkout and are not installed.
    # Namespace discovery lists the data directories too (enrich/data, …), so setuptools installs
    # their files as package data without warnings.
    # The checkout's root is the package root (flat layout): an editable install then puts the
    # checkout on sys.path (a .pth file) without setuptools' warning about its import finder.
    package_dir={"": "."},
    packages=find_namespace_packages(include=["bank_pipeline", "bank_pipeline.*"], exclude=["*.__pycache__"]),
    package_data={
        "bank_pipeline.db.migrations": ["script.py.mako"],
        "bank_pipeline.enrich.data": ["*.json", "*.LICENSE.md"],
        "bank_pipeline.ingest.data": ["*.txt"],
        "bank_pipeline.orchestration": ["dagster.yaml"],  # the instance configuration (instance.py)
    },
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-webserver>=1.13,<1.14",
        "dagster-dg-cli>=1.13,<1.14",  # `dg dev` (make ui), what Dagster 1.13 recommends over `dagster dev`
        "dagster-postgres>=0.29,<0.30",
        "httpx>=0.28,<0.29",
        "pandas>=2.2",
        "pyarrow>=15",
        "sqlalchemy>=2.0,<2.2",
        "alembic>=1.13",
        "cryptography>=43",
        "pyjwt[crypto]>=2.8,<3",  # Enable Banking: an RS256 JWT on every call
        "anthropic>=0.40",
        "psycopg[binary]>=3.2",
        "truelayer-signing>=0.4",
        "starlette>=0.40",
        "uvicorn>=0.30",
        "scikit-learn>=1.4",
        "tenacity>=9,<10",
        "apprise>=1.9,<2",  # alert channels: e-mail (SMTP) and HTTP push (ntfy, Gotify, webhooks …)
    ],
    extras_require={
        # Dagster's Celery executor (BANK_PIPELINE_EXECUTOR=celery, deploy/celery/): RabbitMQ, or
        # Redis as broker/result backend (the `redis` client).
        "celery": ["dagster-celery[redis]>=0.29,<0.30"],
        "test": [
            "pytest>=8",
            "jsonschema>=4.20",
            "openapi-schema-validator>=0.6",
            "ruff>=0.6",
            "beancount>=3,<4",
            "import-linter>=2.5,<3",
            "aiosmtpd>=1.4,<2",  # test_alerts.py: a real SMTP server on loopback receives the e-mail
            "dagster-celery[redis]>=0.29,<0.30",  # test_celery.py runs the import on Celery workers
        ],
    },
    entry_points={"console_scripts": ["bank-pipeline=bank_pipeline.cli:main"]},
)
