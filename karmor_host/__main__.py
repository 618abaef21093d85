from karmor_host.cli import main

main()
