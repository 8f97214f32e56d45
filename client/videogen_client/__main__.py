from videogen_client.cli import main

main()
