"""`python -m bench` (`make bench`)."""

import django

from bench.environment import configure_process, fresh_backends


def main() -> None:
    fresh_backends()
    # Django reads the bench database and broker from the environment when it is set up.
    configure_process()
    django.setup()
    from bench.run import main as run_suite

    run_suite()


if __name__ == "__main__":
    main()
