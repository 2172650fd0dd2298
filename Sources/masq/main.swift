print("masq")
