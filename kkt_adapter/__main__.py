from kkt_adapter.cli import main

main()
