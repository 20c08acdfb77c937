from deskbridge.cli.main import main

main()
